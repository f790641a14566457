"""Find and replace personal data in Chinese and English dialog text with typed placeholders.

First the identifiers with a fixed shape, in this order (an earlier kind wins on overlap):

- e-mail addresses;
- resident ID numbers (18 characters, ISO 7064 MOD 11-2 checksum and birth date checked);
- bank card numbers (13-19 digits, optionally grouped by spaces or dashes, Luhn checked);
- mobile numbers (``1[3-9]`` + 9 digits, optional +86 / 0086, spaces or dashes between
  the 3-4-4 groups);
- landline numbers with an area code (``010-12345678``, ``(0755) 2345 6789``, extensions);
- IPv4 and IPv6 addresses (validated by ``ipaddress``);
- licence plates (京A12345, 粤B·D12345 and the other new-energy forms; no I or O).

Then names, places and companies, from rules and from the LAC model (``pii_ner``), merged:

- addresses and place names: administrative levels, roads, house numbers, estates and
  buildings (rules), place words of the model (countries are too coarse and stay), and
  English street addresses and Chinese city names written in English;
- person names: a surname before an honorific (王先生, 张总), a name after a cue (我叫…,
  客户…, 联系人：…, 我是…，), a surname after 姓, English names after Mr/Ms/Dr, "my name
  is", "agent" …, and the model's names that start with a common surname;
- companies: names ending in a legal form (…有限公司, …集团), well-known brands and banks,
  English names ending in Inc/Ltd/Group …, and the model's organisations; a place the model
  glued to a company (北京市海淀区阿里巴巴公司) becomes [地址][公司].

Limits: a name without a cue that the model misses (often one that is also a word) stays;
landlines without an area code, 15-digit old-style ID numbers and foreign phone numbers
are not found. The findings carry kinds and spans only, never the values, so they can be
logged. ``bench/pii_quality.py`` measures precision and recall per kind.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from clawfed.privacy.pii_ner import NerLabel, entity_spans, split_organization
from clawfed.privacy.pii_rules import (
    COMPOUND_SURNAMES,
    EN_PLACES,
    GENERIC_ORGS,
    KNOWN_ORGS,
    ORG_SUFFIXES,
    PLACE_STOP_CHARS,
    PLATE_PROVINCES,
    PROVINCES,
    SINGLE_SURNAMES,
    id_card_valid,
    luhn_valid,
)


class PiiKind(StrEnum):
    """A kind of personal data."""

    EMAIL = "email"
    ID_CARD = "id_card"
    BANK_CARD = "bank_card"
    MOBILE = "mobile"
    LANDLINE = "landline"
    IP_ADDRESS = "ip_address"
    ADDRESS = "address"
    PERSON_NAME = "person_name"
    COMPANY = "company"
    LICENSE_PLATE = "license_plate"


#: The placeholder each kind is replaced with.
PLACEHOLDERS = MappingProxyType(
    {
        PiiKind.EMAIL: "[邮箱]",
        PiiKind.ID_CARD: "[身份证号]",
        PiiKind.BANK_CARD: "[银行卡号]",
        PiiKind.MOBILE: "[手机号]",
        PiiKind.LANDLINE: "[固定电话]",
        PiiKind.IP_ADDRESS: "[IP地址]",
        PiiKind.ADDRESS: "[地址]",
        PiiKind.PERSON_NAME: "[姓名]",
        PiiKind.COMPANY: "[公司]",
        PiiKind.LICENSE_PLATE: "[车牌]",
    }
)


@dataclass(frozen=True)
class PiiFinding:
    """One piece of personal data: its kind and its span ``[start, end)`` in the input."""

    kind: PiiKind
    start: int
    end: int


@dataclass(frozen=True)
class Redaction:
    """The redacted text and what was replaced (kinds and spans in the original text)."""

    text: str
    findings: tuple[PiiFinding, ...]

    def counts(self) -> dict[PiiKind, int]:
        """How many findings of each kind."""
        out: dict[PiiKind, int] = {}
        for f in self.findings:
            out[f.kind] = out.get(f.kind, 0) + 1
        return out


# -- patterns -----------------------------------------------------------------------------

_CJK = "\u4e00-\u9fff"
_SURNAME = (
    "(?:" + "|".join(sorted(COMPOUND_SURNAMES)) + "|[" + "".join(sorted(SINGLE_SURNAMES)) + "])"
)
_GIVEN_STOP = "的了是在和与我你您他她它们想要请问吗呢吧啊哦嗯就都也还很这那"
_GIVEN_CHAR = f"(?:(?![{_GIVEN_STOP}先女])[{_CJK}])"
_HONORIFIC = "(?:先生|女士|小姐|总|经理|老师|主任|阿姨|叔叔|师傅|同学|老板|大哥|大姐)"
_NAME_CUE = (
    "(?:我叫|我的名字是|我的名字叫|名字叫|名字是|本人是|本人|客户经理|客户|联系人|收件人|收货人"
    "|收款人|户名|持卡人|姓名|申请人|借款人|经办人|老公|老婆|爱人|丈夫|妻子|我爸|我妈|同事|朋友)"
)
_PLACE_CHAR = f"(?:(?![{PLACE_STOP_CHARS}])[{_CJK}])"
_NUM = "[0-9一二三四五六七八九十百零〇]"
_PROV = (
    "(?:" + "|".join(PROVINCES) + ")(?:壮族自治区|回族自治区|维吾尔自治区|自治区|特别行政区|省|市)?"
)
_ADDRESS = re.compile(
    "(?P<pii>"
    f"(?P<prov>{_PROV})?"
    f"(?P<city>{_PLACE_CHAR}{{1,6}}?(?:市|自治州|地区|盟))?"
    f"(?P<dist>{_PLACE_CHAR}{{1,6}}?(?:新区|区|县|旗))?"
    f"(?P<town>{_PLACE_CHAR}{{1,6}}?(?:镇|乡|街道))?"
    f"(?P<road>(?:{_PLACE_CHAR}|[0-9]){{1,10}}?(?:大道|大街|路|街|巷|弄|胡同)"
    "(?:[东西南北中一二三四五六七八九十]{1,2}段)?)?"
    f"(?P<num>{_NUM}+号(?:院)?)?"
    f"(?P<estate>{_PLACE_CHAR}{{1,8}}?(?:小区|花园|大厦|公寓|新村|家园|广场|中心|大楼|苑))?"
    f"(?P<bldg>(?:[0-9A-Za-z一二三四五六七八九十]+(?:号楼|栋|幢|座|单元|层|楼|室|号))+)?"
    ")"
)
_ADDRESS_PARTS = ("prov", "city", "dist", "town", "road", "num", "estate", "bldg")

_DIGIT_EDGE_L = r"(?<![0-9])"
_DIGIT_EDGE_R = r"(?![0-9])"

_EMAIL = re.compile(r"(?P<pii>[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,})")
_ID_CARD = re.compile(
    r"(?<![0-9A-Za-z])(?P<pii>[1-9][0-9]{5}[ ]?[0-9]{8}[ ]?[0-9]{3}[0-9Xx])(?![0-9A-Za-z])"
)
_BANK_CARD = re.compile(r"(?<![0-9A-Za-z+])(?P<pii>[0-9](?:[ -]?[0-9]){12,18})(?![0-9A-Za-z])")
_PREFIXED_MOBILE = re.compile(r"(?:0086|86)1[3-9][0-9]{9}")
_MOBILE = re.compile(
    _DIGIT_EDGE_L
    + r"(?P<pii>(?:[(（]?(?:\+|00)?86[)）]?[ -]?)?1[3-9][0-9](?:[ -]?[0-9]{4}){2})"
    + _DIGIT_EDGE_R
)
_LANDLINE = re.compile(
    _DIGIT_EDGE_L
    + r"(?P<pii>(?:[(（]0[0-9]{2,3}[)）]|0[0-9]{2,3})[ -]?[0-9]{3,4}[ -]?[0-9]{4}"
    + r"(?:[ ]?(?:转|ext\.?|-)[ ]?[0-9]{1,6})?)"
    + _DIGIT_EDGE_R
)
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_IPV4 = re.compile(
    r"(?<![0-9.])(?P<pii>" + rf"(?:{_OCTET}\.){{3}}{_OCTET}" + r")(?![0-9])(?!\.[0-9])"
)
_IPV6 = re.compile(
    r"(?<![0-9A-Fa-f:])(?P<pii>(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4})(?![0-9A-Fa-f:])"
)
_NAME_HONORIFIC = re.compile(f"(?P<pii>{_SURNAME}{_GIVEN_CHAR}{{0,2}}?){_HONORIFIC}")
_NAME_CUED = re.compile(f"{_NAME_CUE}[:：]?[ ]?(?P<pii>{_SURNAME}{_GIVEN_CHAR}{{1,2}})")
_NAME_SELF = re.compile(
    f"(?:我是|我就是|这里是|本人是)(?P<pii>{_SURNAME}{_GIVEN_CHAR}{{1,2}})(?<!人)(?=[，,。！？!?；;\\s]|$)"
)
_SURNAME_ONLY = re.compile(f"(?:我|本人|免贵)?姓(?P<pii>{_SURNAME})(?![{_CJK}]{{2}})")
_CJK_CHAR = re.compile(f"[{_CJK}]")
_EN_NAME = r"[A-Z][a-z]+(?:[ -][A-Z][a-z]+)?"
_NAME_EN = re.compile(
    r"(?:\b(?:Mr|Mrs|Ms|Miss|Dr|Prof)\.?\s+"
    r"|\b(?i:my name is|this is|I am|I'm|call me|agent|attention|attn\.?|my wife|my husband"
    r"|my colleague|my friend|my son|my daughter|my manager)\s+)"
    rf"(?P<pii>{_EN_NAME})"
)
_PLATE_CHAR = "[A-HJ-NP-Z0-9]"
_PLATE = re.compile(
    rf"(?<![A-Za-z0-9])(?P<pii>[{PLATE_PROVINCES}][A-HJ-NP-Z][·•. -]?"
    rf"(?:[DF]{_PLATE_CHAR}[0-9]{{4}}|[0-9]{{5}}[DF]|{_PLATE_CHAR}{{4}}[0-9挂学警港澳]))"
    r"(?![A-Za-z0-9])"
)
_ORG_NAME_CHAR = f"(?:(?![{PLACE_STOP_CHARS}叫和跟从向对])[{_CJK}]|[（(][{_CJK}]{{2,4}}[)）])"
_ORG_SUFFIX = "(?:" + "|".join(ORG_SUFFIXES) + ")"
_COMPANY = re.compile(
    f"(?P<pii>(?![公司行单位家某这那该本贵])(?:{_ORG_NAME_CHAR}){{2,16}}?{_ORG_SUFFIX})"
)
_KNOWN_ORG = re.compile(
    "(?P<pii>(?:"
    + "|".join(re.escape(n) for n in sorted(KNOWN_ORGS, key=len, reverse=True))
    + r")(?: (?:China|Group|Inc\.?|Ltd\.?|Limited|Corp\.?|Corporation|Holdings|Bank))?)"
)
_COMPANY_EN = re.compile(
    r"\b(?P<pii>(?:[A-Z][A-Za-z&]+ ){1,3}"
    r"(?:Inc|Ltd|LLC|Corp|Corporation|Group|Holdings|Bank|Technologies|Limited)\b\.?)"
)
_ADDRESS_EN = re.compile(
    r"(?P<pii>(?:\b(?:Room|Rm|Flat|Unit|Apt|Suite)\.? ?[0-9A-Z-]+, )?\b[0-9]{1,5}"
    r"(?: [A-Z][a-z]+){1,3} (?:Road|Rd|Street|St|Avenue|Ave|Boulevard|Blvd|Lane|Drive|Way)\b"
    r"(?:, (?:[A-Z][a-z']+)(?: [A-Z][a-z']+){0,2})*)"
)
_PLACE_EN = re.compile(
    r"\b(?P<pii>(?:"
    + "|".join(re.escape(n) for n in sorted(EN_PLACES, key=len, reverse=True))
    + r")(?: District| City| Province)?)\b"
)


def _digits(value: str) -> str:
    return "".join(ch for ch in value if ch.isdigit())


def _card_valid(match: re.Match[str]) -> bool:
    digits = _digits(match.group("pii"))
    return luhn_valid(digits) and not _PREFIXED_MOBILE.fullmatch(digits)


def _ipv6_valid(value: str) -> bool:
    try:
        ipaddress.IPv6Address(value)
    except ValueError:
        return False
    return True


def _address_valid(match: re.Match[str]) -> bool:
    parts = {p for p in _ADDRESS_PARTS if match.group(p)}
    return (len(parts) >= 2 and parts != {"prov", "city"}) or {"road", "num"} <= parts


def _company_valid(match: re.Match[str]) -> bool:
    return match.group("pii") not in GENERIC_ORGS


Detector = tuple[PiiKind, re.Pattern[str], Callable[[re.Match[str]], bool] | None]

#: Identifiers with a fixed shape; an earlier one wins where two overlap.
_PATTERNED: tuple[Detector, ...] = (
    (PiiKind.EMAIL, _EMAIL, None),
    (PiiKind.ID_CARD, _ID_CARD, lambda m: id_card_valid(m.group("pii").replace(" ", ""))),
    (PiiKind.BANK_CARD, _BANK_CARD, _card_valid),
    (PiiKind.MOBILE, _MOBILE, None),
    (PiiKind.LANDLINE, _LANDLINE, None),
    (PiiKind.IP_ADDRESS, _IPV4, None),
    (PiiKind.IP_ADDRESS, _IPV6, lambda m: _ipv6_valid(m.group("pii"))),
    (PiiKind.LICENSE_PLATE, _PLATE, None),
)
#: Rules for names, places and companies; they are merged with the model's spans.
_RULES: tuple[Detector, ...] = (
    (PiiKind.ADDRESS, _ADDRESS, _address_valid),
    (PiiKind.ADDRESS, _ADDRESS_EN, None),
    (PiiKind.ADDRESS, _PLACE_EN, None),
    (PiiKind.PERSON_NAME, _NAME_HONORIFIC, None),
    (PiiKind.PERSON_NAME, _NAME_CUED, None),
    (PiiKind.PERSON_NAME, _NAME_SELF, None),
    (PiiKind.PERSON_NAME, _SURNAME_ONLY, None),
    (PiiKind.PERSON_NAME, _NAME_EN, None),
    (PiiKind.COMPANY, _COMPANY, _company_valid),
    (PiiKind.COMPANY, _KNOWN_ORG, None),
    (PiiKind.COMPANY, _COMPANY_EN, None),
)
_SOFT_KINDS = frozenset({PiiKind.ADDRESS, PiiKind.PERSON_NAME, PiiKind.COMPANY})
_FROM_NER = {
    NerLabel.PERSON: PiiKind.PERSON_NAME,
    NerLabel.PLACE: PiiKind.ADDRESS,
    NerLabel.ORGANIZATION: PiiKind.COMPANY,
}
#: Which kind keeps a contested span when two equally long soft spans overlap.
_RANK = {PiiKind.COMPANY: 0, PiiKind.ADDRESS: 1, PiiKind.PERSON_NAME: 2}


def _matches(text: str, detectors: tuple[Detector, ...], wanted: set[PiiKind]) -> list[PiiFinding]:
    out: list[PiiFinding] = []
    for kind, pattern, valid in detectors:
        if kind not in wanted:
            continue
        for m in pattern.finditer(text):
            start, end = m.span("pii")
            if start < end and (valid is None or valid(m)):
                out.append(PiiFinding(kind, start, end))
    return out


def _patterned(text: str, wanted: set[PiiKind]) -> list[PiiFinding]:
    taken: list[PiiFinding] = []
    for f in _matches(text, _PATTERNED, wanted):
        if not any(f.start < t.end and t.start < f.end for t in taken):
            taken.append(f)
    return taken


def _merge_same_kind(spans: list[PiiFinding]) -> list[PiiFinding]:
    """Union overlapping spans of one kind; addresses and companies also join when adjacent."""
    out: list[PiiFinding] = []
    for f in sorted(spans, key=lambda f: (f.kind, f.start, -f.end)):
        last = out[-1] if out else None
        joins = last is not None and last.kind == f.kind
        if joins and last is not None:
            touching = f.start < last.end or (
                f.start == last.end and f.kind is not PiiKind.PERSON_NAME
            )
            if touching:
                out[-1] = PiiFinding(f.kind, last.start, max(last.end, f.end))
                continue
        out.append(f)
    return out


def _subtract(f: PiiFinding, taken: list[PiiFinding], text: str) -> list[PiiFinding]:
    """The parts of ``f`` outside ``taken``; a cut-off rest is kept only if 3+ word characters.

    A name, place or company that overlaps an identifier was misjudged there (the model
    reads ``…5678信信`` as one organisation), so a short rest is dropped.
    """
    pieces = [(f.start, f.end)]
    for t in taken:
        pieces = [
            part
            for s, e in pieces
            for part in ((s, min(e, t.start)), (max(s, t.end), e))
            if part[0] < part[1]
        ]
    if pieces == [(f.start, f.end)]:
        return [f]
    return [
        PiiFinding(f.kind, s, e) for s, e in pieces if sum(ch.isalnum() for ch in text[s:e]) >= 3
    ]


def _soft(text: str, wanted: set[PiiKind], hard: list[PiiFinding], ner: bool) -> list[PiiFinding]:
    candidates: list[PiiFinding] = []
    for f in _matches(text, _RULES, wanted):
        if f.kind is PiiKind.COMPANY and _CJK_CHAR.search(text[f.start : f.end]):
            parts = split_organization(text[f.start : f.end], f.start)
            candidates += [PiiFinding(_FROM_NER[p.label], p.start, p.end) for p in parts]
        else:
            candidates.append(f)
    if ner and wanted & _SOFT_KINDS:
        for span in entity_spans(text):
            kind = _FROM_NER[span.label]
            if kind in wanted:
                candidates.append(PiiFinding(kind, span.start, span.end))
    pieces = [p for f in candidates for p in _subtract(f, hard, text)]
    merged = _merge_same_kind(pieces)
    taken: list[PiiFinding] = list(hard)
    out: list[PiiFinding] = []
    for f in sorted(merged, key=lambda f: (-(f.end - f.start), _RANK[f.kind], f.start)):
        for piece in _subtract(f, taken, text):
            taken.append(piece)
            out.append(piece)
    return out


def find_pii(
    text: str, kinds: Collection[PiiKind] | None = None, *, ner: bool = True
) -> tuple[PiiFinding, ...]:
    """The personal data in ``text`` (of ``kinds``, all by default), sorted by position.

    Identifiers with a fixed shape (e-mail, ID, card, phone, IP, plate) are found first;
    names, places and companies come from rules and, with ``ner`` (the default), from the
    LAC model (``pii_ner``), merged so that findings never overlap.
    """
    wanted = set(PiiKind) if kinds is None else {PiiKind(k) for k in kinds}
    hard = _patterned(text, wanted)
    soft = _soft(text, wanted, hard, ner) if wanted & _SOFT_KINDS else []
    return tuple(sorted(hard + soft, key=lambda f: f.start))


def redact(text: str, kinds: Collection[PiiKind] | None = None, *, ner: bool = True) -> Redaction:
    """``text`` with every finding replaced by its placeholder (``[手机号]``, ``[公司]`` …)."""
    findings = find_pii(text, kinds, ner=ner)
    pieces: list[str] = []
    pos = 0
    for f in findings:
        pieces.append(text[pos : f.start])
        pieces.append(PLACEHOLDERS[f.kind])
        pos = f.end
    pieces.append(text[pos:])
    return Redaction("".join(pieces), findings)
