"""Matching stored names to the chat vocabulary: metric names, departments, display values."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from clawfed.chat.nlu.lang import Lang
from clawfed.chat.nlu.lexicon import default_lexicon, norm_word

#: Lexicon metrics in the order a "main" metric is chosen when a question names none.
PRIMARY_METRICS = ("accuracy", "auc", "f1", "precision", "recall", "loss", "error", "sales")

#: Metric names trainers report that are not lexicon aliases.
_STORED_ALIASES = {
    "roc_auc": "auc",
    "log_loss": "loss",
    "logloss": "loss",
    "val_loss": "loss",
    "train_loss": "loss",
    "f1_score": "f1",
}


def metric_key(name: str) -> str | None:
    """The lexicon key of a stored metric name ("roc_auc" -> "auc"), None if unknown."""
    word = norm_word(name)
    if word in _STORED_ALIASES:
        return _STORED_ALIASES[word]
    for metric in default_lexicon().metrics:
        if word == metric.key or word in metric.aliases or word.replace("_", " ") in metric.aliases:
            return metric.key
    return None


def stored_name(metrics: Iterable[str], key: str) -> str | None:
    """The first stored metric name whose lexicon key is ``key``."""
    return next((n for n in metrics if metric_key(n) == key), None)


def metric_value(metrics: Mapping[str, float], key: str) -> float | None:
    """The value of the metric ``key`` in a stored metrics mapping, None when absent."""
    name = stored_name(metrics, key)
    return None if name is None else metrics[name]


def pick_metric(names: Iterable[str], wanted: str | None = None) -> str | None:
    """The lexicon key to report: ``wanted`` if present, else the first of ``PRIMARY_METRICS``."""
    keys = {k for k in (metric_key(n) for n in names) if k is not None}
    if wanted is not None:
        return wanted if wanted in keys else None
    return next((k for k in PRIMARY_METRICS if k in keys), None)


def metric_label(key: str, lang: Lang) -> str:
    """The display name of a lexicon metric ("准确率" / "accuracy")."""
    found = default_lexicon().find_metric(key)
    return found.name(lang) if found is not None else key


def is_ratio(key: str) -> bool:
    """Whether a lexicon metric is a fraction in [0, 1] (shown as a percentage)."""
    found = default_lexicon().find_metric(key)
    return bool(found and found.ratio)


def higher_is_better(key: str) -> bool:
    """Whether larger values of a lexicon metric are better."""
    found = default_lexicon().find_metric(key)
    return True if found is None else found.higher_is_better


def format_value(key: str, value: float) -> str:
    """A metric value for chat: "91.2%" for ratios, four significant digits otherwise."""
    if is_ratio(key):
        return f"{value * 100:.1f}%"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def department_matches(stored: str, key: str) -> bool:
    """Whether the stored department name ``stored`` is the lexicon department ``key``.

    True when the name is one of the department's aliases or display names, or contains
    one of them (e.g. "华东信贷部" for ``credit``).
    """
    word = norm_word(stored)
    if word == key:
        return True
    term = next((t for t in default_lexicon().departments if t.key == key), None)
    if term is None:
        return False
    names = {norm_word(a) for a in (*term.aliases, term.zh, term.en)}
    if word in names:
        return True
    spaced = f" {word.replace('-', ' ').replace('_', ' ')} "
    return any(
        (n in word and len(n) >= 2) if not n.isascii() else f" {n} " in spaced for n in names
    )


def department_label(key: str, lang: Lang) -> str:
    """The display name of a lexicon department key ("信贷部" / "Credit")."""
    term = next((t for t in default_lexicon().departments if t.key == key), None)
    return term.name(lang) if term is not None else key


def region_label(key: str, lang: Lang) -> str:
    """The display name of a lexicon region key ("华东" / "East China")."""
    term = next((t for t in default_lexicon().regions if t.key == key), None)
    return term.name(lang) if term is not None else key
