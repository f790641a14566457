"""The parser's vocabulary: typed view of ``lexicon.yaml`` with validation."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from pathlib import Path
from types import MappingProxyType

import yaml

from clawfed.chat.nlu.errors import LexiconError
from clawfed.chat.nlu.lang import Lang

DEFAULT_LEXICON_PATH = Path(__file__).with_name("lexicon.yaml")


class SlotSignal(StrEnum):
    """A slot whose presence adds bonus points to an intent."""

    METRIC = "metric"
    JOB = "job"
    MULTIPLE = "multiple"  # two or more departments, or two or more regions


class RollingUnit(StrEnum):
    """The unit of a rolling window such as "最近7天"."""

    DAY = "day"
    WEEK = "week"
    MONTH = "month"


@dataclass(frozen=True)
class Term:
    """A department or region: canonical key, display names and the aliases people type."""

    key: str
    zh: str
    en: str
    aliases: tuple[str, ...]

    def name(self, lang: Lang) -> str:
        """Return the display name in ``lang``."""
        return self.zh if lang is Lang.ZH else self.en


@dataclass(frozen=True)
class MetricTerm:
    """A metric: like a :class:`Term`, plus how its values read."""

    key: str
    zh: str
    en: str
    aliases: tuple[str, ...]
    ratio: bool
    higher_is_better: bool
    priority: int

    def name(self, lang: Lang) -> str:
        """Return the display name in ``lang``."""
        return self.zh if lang is Lang.ZH else self.en


@dataclass(frozen=True)
class IntentRule:
    """The trigger words of one intent and the bonus its slots earn."""

    name: str
    strong: tuple[str, ...]
    weak: tuple[str, ...]
    bonus: Mapping[SlotSignal, int]
    takes_object: bool


@dataclass(frozen=True)
class Lexicon:
    """Everything the parser knows about words; built by :func:`load_lexicon`."""

    departments: tuple[Term, ...]
    regions: tuple[Term, ...]
    metrics: tuple[MetricTerm, ...]
    periods: Mapping[str, tuple[str, ...]]
    rolling_prefixes: tuple[str, ...]
    rolling_units: Mapping[RollingUnit, tuple[str, ...]]
    job_nouns: tuple[str, ...]
    fillers: tuple[str, ...]
    intents: tuple[IntentRule, ...]
    strong_weight: int
    weak_weight: int
    threshold: int

    def department(self, key: str) -> Term:
        """Return the department with canonical ``key``; raise LexiconError if unknown."""
        return _find(self.departments, key, "department")

    def region(self, key: str) -> Term:
        """Return the region with canonical ``key``; raise LexiconError if unknown."""
        return _find(self.regions, key, "region")

    def metric(self, key: str) -> MetricTerm:
        """Return the metric with canonical ``key``; raise LexiconError if unknown."""
        for m in self.metrics:
            if m.key == key:
                return m
        raise LexiconError(f"unknown metric {key!r}; known: {[m.key for m in self.metrics]}")

    def find_metric(self, key: str) -> MetricTerm | None:
        """Return the metric with canonical ``key``, or None when the lexicon lacks it."""
        return next((m for m in self.metrics if m.key == key), None)

    def named(self) -> tuple[tuple[str, str, tuple[str, ...]], ...]:
        """Every department, region and metric as (kind, key, aliases)."""
        out = [("department", t.key, t.aliases) for t in self.departments]
        out += [("region", t.key, t.aliases) for t in self.regions]
        out += [("metric", m.key, m.aliases) for m in self.metrics]
        return tuple(out)

    def words(self) -> tuple[str, ...]:
        """Every alias and trigger word, for a tokenizer's custom dictionary."""
        out: list[str] = []
        for _, _, aliases in self.named():
            out.extend(aliases)
        for aliases in self.periods.values():
            out.extend(aliases)
        for rule in self.intents:
            out.extend(rule.strong)
            out.extend(rule.weak)
        out.extend(self.job_nouns)
        return tuple(dict.fromkeys(out))


def _find(terms: tuple[Term, ...], key: str, kind: str) -> Term:
    for t in terms:
        if t.key == key:
            return t
    raise LexiconError(f"unknown {kind} {key!r}; known: {[t.key for t in terms]}")


def norm_word(word: str) -> str:
    """Normalise a lexicon word the way message text is normalised (NFKC, lower case)."""
    return " ".join(unicodedata.normalize("NFKC", word).lower().split())


def _mapping(value: object, where: str) -> Mapping[str, object]:
    if not isinstance(value, dict):
        raise LexiconError(f"{where} must be a mapping, got {type(value).__name__}")
    return value


def _words(value: object, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise LexiconError(f"{where} must be a non-empty list of words, got {value!r}")
    out: list[str] = []
    for w in value:
        if not isinstance(w, str | int | float) or isinstance(w, bool) or not str(w).strip():
            raise LexiconError(f"{where} must hold non-empty words, got {w!r}")
        out.append(norm_word(str(w)))
    return tuple(dict.fromkeys(out))


def _str(data: Mapping[str, object], key: str, where: str) -> str:
    v = data.get(key)
    if not isinstance(v, str) or not v.strip():
        raise LexiconError(f"{where}.{key} must be a non-empty string, got {v!r}")
    return v


def _int(data: Mapping[str, object], key: str, where: str, *, minimum: int) -> int:
    v = data.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
        raise LexiconError(f"{where}.{key} must be an integer >= {minimum}, got {v!r}")
    return v


def _bool(data: Mapping[str, object], key: str, where: str, default: bool | None = None) -> bool:
    v = data.get(key, default)
    if not isinstance(v, bool):
        raise LexiconError(f"{where}.{key} must be true or false, got {v!r}")
    return v


def _terms(data: Mapping[str, object], section: str) -> tuple[Term, ...]:
    out = []
    for key, body in _mapping(data.get(section), section).items():
        where = f"{section}.{key}"
        b = _mapping(body, where)
        out.append(
            Term(
                str(key),
                _str(b, "zh", where),
                _str(b, "en", where),
                _words(b.get("aliases"), where),
            )
        )
    return tuple(out)


def _metrics(data: Mapping[str, object]) -> tuple[MetricTerm, ...]:
    out = []
    for key, body in _mapping(data.get("metrics"), "metrics").items():
        where = f"metrics.{key}"
        b = _mapping(body, where)
        out.append(
            MetricTerm(
                key=str(key),
                zh=_str(b, "zh", where),
                en=_str(b, "en", where),
                aliases=_words(b.get("aliases"), where),
                ratio=_bool(b, "ratio", where),
                higher_is_better=_bool(b, "higher_is_better", where),
                priority=_int(b, "priority", where, minimum=0),
            )
        )
    return tuple(out)


def _intents(data: Mapping[str, object]) -> tuple[IntentRule, ...]:
    raw = data.get("intents")
    if not isinstance(raw, list) or not raw:
        raise LexiconError(f"intents must be a non-empty list, got {raw!r}")
    out = []
    seen: set[str] = set()
    for i, body in enumerate(raw):
        b = _mapping(body, f"intents[{i}]")
        name = _str(b, "name", f"intents[{i}]")
        where = f"intents.{name}"
        if name in seen:
            raise LexiconError(f"{where} is defined twice; each intent appears once")
        seen.add(name)
        bonus: dict[SlotSignal, int] = {}
        for sig, pts in _mapping(b.get("bonus", {}), f"{where}.bonus").items():
            try:
                signal = SlotSignal(sig)
            except ValueError:
                raise LexiconError(
                    f"{where}.bonus names unknown slot signal {sig!r}; "
                    f"known: {[s.value for s in SlotSignal]}"
                ) from None
            bonus[signal] = _int({"points": pts}, "points", f"{where}.bonus.{sig}", minimum=0)
        weak = _words(b["weak"], f"{where}.weak") if b.get("weak") else ()
        out.append(
            IntentRule(
                name=name,
                strong=_words(b.get("strong"), f"{where}.strong"),
                weak=weak,
                bonus=MappingProxyType(bonus),
                takes_object=_bool(b, "takes_object", where, default=False),
            )
        )
    return tuple(out)


def _check_unique(lex: Lexicon) -> None:
    owner: dict[str, str] = {}
    for kind, key, aliases in lex.named():
        for alias in aliases:
            here = f"{kind} {key}"
            if owner.setdefault(alias, here) != here:
                raise LexiconError(
                    f"alias {alias!r} belongs to both {owner[alias]} and {here}; "
                    "an alias must name one thing"
                )


def parse_lexicon(data: object) -> Lexicon:
    """Build a :class:`Lexicon` from the parsed YAML document, validating every section.

    Raises
    ------
    LexiconError
        Naming the section and the offending value.
    """
    d = _mapping(data, "lexicon")
    scoring = _mapping(d.get("scoring"), "scoring")
    periods = {
        str(label): _words(aliases, f"periods.{label}")
        for label, aliases in _mapping(d.get("periods"), "periods").items()
    }
    rolling = _mapping(d.get("rolling"), "rolling")
    units: dict[RollingUnit, tuple[str, ...]] = {}
    for unit, aliases in _mapping(rolling.get("units"), "rolling.units").items():
        try:
            units[RollingUnit(unit)] = _words(aliases, f"rolling.units.{unit}")
        except ValueError:
            raise LexiconError(
                f"rolling.units names unknown unit {unit!r}; "
                f"known: {[u.value for u in RollingUnit]}"
            ) from None
    lex = Lexicon(
        departments=_terms(d, "departments"),
        regions=_terms(d, "regions"),
        metrics=_metrics(d),
        periods=MappingProxyType(periods),
        rolling_prefixes=_words(rolling.get("prefixes"), "rolling.prefixes"),
        rolling_units=MappingProxyType(units),
        job_nouns=_words(d.get("job_nouns"), "job_nouns"),
        fillers=_words(d.get("fillers"), "fillers"),
        intents=_intents(d),
        strong_weight=_int(scoring, "strong", "scoring", minimum=1),
        weak_weight=_int(scoring, "weak", "scoring", minimum=0),
        threshold=_int(scoring, "threshold", "scoring", minimum=1),
    )
    _check_unique(lex)
    return lex


def load_lexicon(path: Path | None = None) -> Lexicon:
    """Read and validate a lexicon file (the packaged ``lexicon.yaml`` when ``path`` is None).

    Raises
    ------
    LexiconError
        When the file cannot be read, is not YAML, or breaks a rule.
    """
    p = path or DEFAULT_LEXICON_PATH
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise LexiconError(f"cannot read lexicon file {p}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise LexiconError(f"lexicon file {p} is not valid YAML: {exc}") from exc
    return parse_lexicon(data)


@cache
def default_lexicon() -> Lexicon:
    """The packaged lexicon, loaded once."""
    return load_lexicon()
