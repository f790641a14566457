"""Find and replace personal data in Chinese and English dialog text with typed placeholders.

Detected, in this order (an earlier kind wins where two overlap):

- e-mail addresses;
- resident ID numbers (18 characters, ISO 7064 MOD 11-2 checksum and birth date checked);
- bank card numbers (13-19 digits, optionally grouped by spaces or dashes, Luhn checked);
- mobile numbers (``1[3-9]`` + 9 digits, optional +86 / 0086, spaces or dashes between
  the 3-4-4 groups);
- landline numbers with an area code (``010-12345678``, ``(0755) 2345 6789``, extensions);
- IPv4 and IPv6 addresses (validated by ``ipaddress``);
- street addresses: at least two of province, city, district, town, road, estate, house
  number and building/room, or a road with a house number;
- person names: a common surname followed by an honorific (王先生, 李小红女士, 张总), a
  name after a cue (我叫…, 客户…, 联系人：…, 姓名：…), a surname after 姓 (我姓王), and
  English names after Mr/Ms/Dr or "my name is" / "this is" / "I am".

Limits: names are only found next to such cues, and a cue followed by a short name and
more text may take one character too many (over-redaction, never under); landlines without
an area code, 15-digit old-style ID numbers, foreign phone numbers and free-form addresses
without administrative or road words are not found. The findings carry kinds and spans
only, never the values, so they can be logged.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from clawfed.privacy.pii_rules import (
    COMPOUND_SURNAMES,
    PLACE_STOP_CHARS,
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
    "(?:我叫|我的名字是|我的名字叫|名字叫|名字是|本人是|本人|客户|联系人|收件人|收货人|户名"
    "|持卡人|姓名|申请人|借款人)"
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
    f"(?P<road>(?:{_PLACE_CHAR}|[0-9]){{1,10}}?(?:大道|大街|路|街|巷|弄|胡同))?"
    f"(?P<num>{_NUM}+号(?:院)?)?"
    f"(?P<estate>{_PLACE_CHAR}{{1,8}}?(?:小区|花园|大厦|公寓|新村|家园|广场|苑))?"
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
_BANK_CARD = re.compile(r"(?<![0-9+])(?P<pii>[0-9](?:[ -]?[0-9]){12,18})" + _DIGIT_EDGE_R)
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
_SURNAME_ONLY = re.compile(f"(?:我|本人|免贵)?姓(?P<pii>{_SURNAME})(?![{_CJK}]{{2}})")
_NAME_EN = re.compile(
    r"(?:\b(?:Mr|Mrs|Ms|Miss|Dr)\.?\s+|\b(?:[Mm]y name is|[Tt]his is|I am|I'm|[Cc]all me)\s+)"
    r"(?P<pii>[A-Z][a-z]+(?:[ -][A-Z][a-z]+)?)"
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


Detector = tuple[PiiKind, re.Pattern[str], Callable[[re.Match[str]], bool] | None]

_DETECTORS: tuple[Detector, ...] = (
    (PiiKind.EMAIL, _EMAIL, None),
    (PiiKind.ID_CARD, _ID_CARD, lambda m: id_card_valid(m.group("pii").replace(" ", ""))),
    (PiiKind.BANK_CARD, _BANK_CARD, _card_valid),
    (PiiKind.MOBILE, _MOBILE, None),
    (PiiKind.LANDLINE, _LANDLINE, None),
    (PiiKind.IP_ADDRESS, _IPV4, None),
    (PiiKind.IP_ADDRESS, _IPV6, lambda m: _ipv6_valid(m.group("pii"))),
    (PiiKind.ADDRESS, _ADDRESS, _address_valid),
    (PiiKind.PERSON_NAME, _NAME_HONORIFIC, None),
    (PiiKind.PERSON_NAME, _NAME_CUED, None),
    (PiiKind.PERSON_NAME, _SURNAME_ONLY, None),
    (PiiKind.PERSON_NAME, _NAME_EN, None),
)


def find_pii(text: str, kinds: Collection[PiiKind] | None = None) -> tuple[PiiFinding, ...]:
    """The personal data in ``text`` (of ``kinds``, all by default), sorted by position.

    Findings never overlap: a span already claimed by an earlier detector is skipped.
    """
    wanted = set(PiiKind) if kinds is None else {PiiKind(k) for k in kinds}
    taken: list[PiiFinding] = []
    for kind, pattern, valid in _DETECTORS:
        if kind not in wanted:
            continue
        for m in pattern.finditer(text):
            start, end = m.span("pii")
            if start == end or (valid is not None and not valid(m)):
                continue
            if any(start < f.end and f.start < end for f in taken):
                continue
            taken.append(PiiFinding(kind, start, end))
    return tuple(sorted(taken, key=lambda f: f.start))


def redact(text: str, kinds: Collection[PiiKind] | None = None) -> Redaction:
    """``text`` with every finding replaced by its placeholder (``[手机号]``, ``[邮箱]`` …)."""
    findings = find_pii(text, kinds)
    pieces: list[str] = []
    pos = 0
    for f in findings:
        pieces.append(text[pos : f.start])
        pieces.append(PLACEHOLDERS[f.kind])
        pos = f.end
    pieces.append(text[pos:])
    return Redaction("".join(pieces), findings)
