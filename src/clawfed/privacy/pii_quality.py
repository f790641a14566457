"""Precision and recall of PII detection, per kind, on a labelled set of sentences."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from clawfed.core import DataError
from clawfed.privacy.pii import PiiFinding, PiiKind, find_pii


@dataclass(frozen=True)
class LabelledSentence:
    """A sentence and, per kind, the values of that kind it holds (each occurrence counts).

    ``split`` is ``tuning`` (the detector was improved on it) or ``holdout`` (written later,
    never used to change the detector).
    """

    text: str
    entities: Mapping[PiiKind, tuple[str, ...]]
    split: str = "tuning"

    def gold_spans(self) -> list[tuple[PiiKind, int, int]]:
        """Every occurrence of every labelled value, as ``(kind, start, end)``.

        An occurrence inside a longer labelled value of another kind (广州 in 广州分行)
        belongs to that value and is not listed.
        """
        spans: list[tuple[PiiKind, int, int]] = []
        for kind, values in self.entities.items():
            for value in set(values):
                pos = self.text.find(value)
                while pos >= 0:
                    spans.append((kind, pos, pos + len(value)))
                    pos = self.text.find(value, pos + 1)
        return [
            (k, s, e)
            for k, s, e in spans
            if not any(
                k2 is not k and s2 <= s and e <= e2 and e2 - s2 > e - s for k2, s2, e2 in spans
            )
        ]


@dataclass(frozen=True)
class KindScore:
    """Counts and rates of one kind: gold entities found, findings that hit a gold entity."""

    kind: PiiKind
    gold: int
    found: int
    predicted: int
    correct: int

    @property
    def recall(self) -> float:
        """Share of gold entities whose every character a finding of this kind covers."""
        return self.found / self.gold if self.gold else 1.0

    @property
    def precision(self) -> float:
        """Share of findings of this kind that overlap a gold entity of this kind."""
        return self.correct / self.predicted if self.predicted else 1.0


def load_labelled(path: Path | str) -> list[LabelledSentence]:
    """Read ``sentences: [{text, entities: {kind: [value, …]}}]`` from a YAML file.

    Raises
    ------
    DataError
        If the file is malformed, names an unknown kind, or a value is not in its text.
    """
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        items = raw["sentences"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise DataError(f"labelled PII set {str(path)!r} cannot be read: {exc}") from exc
    out: list[LabelledSentence] = []
    for number, item in enumerate(items, start=1):
        text = item.get("text") if isinstance(item, dict) else None
        entities = item.get("entities") or {} if isinstance(item, dict) else None
        if not isinstance(text, str) or not isinstance(entities, dict):
            raise DataError(f"labelled PII set, sentence {number}: needs text and entities")
        parsed: dict[PiiKind, tuple[str, ...]] = {}
        for kind, values in entities.items():
            try:
                k = PiiKind(kind)
            except ValueError:
                raise DataError(
                    f"labelled PII set, sentence {number}: unknown kind {kind!r}"
                ) from None
            for v in values:
                if not isinstance(v, str) or v not in text:
                    raise DataError(
                        f"labelled PII set, sentence {number}: {kind} value {v!r} is not in "
                        "the text"
                    )
            parsed[k] = tuple(values)
        split = item.get("split", "tuning")
        if split not in ("tuning", "holdout"):
            raise DataError(
                f"labelled PII set, sentence {number}: split must be tuning or holdout, "
                f"got {split!r}"
            )
        out.append(LabelledSentence(text, parsed, split))
    return out


def _covered(start: int, end: int, findings: Sequence[PiiFinding], text: str) -> bool:
    marks = [False] * (end - start)
    for f in findings:
        for i in range(max(start, f.start), min(end, f.end)):
            marks[i - start] = True
    return all(m or text[start + i].isspace() for i, m in enumerate(marks))


def score(
    sentences: Sequence[LabelledSentence],
    detect: Callable[[str], Sequence[PiiFinding]] = find_pii,
) -> dict[PiiKind, KindScore]:
    """Per-kind counts of ``detect`` (``find_pii`` by default) on ``sentences``.

    A gold entity is found when findings of its kind cover all its characters (spaces
    aside); a finding is correct when it overlaps a gold entity of its kind.
    """
    counts = {k: [0, 0, 0, 0] for k in PiiKind}
    for s in sentences:
        findings = list(detect(s.text))
        gold = s.gold_spans()
        for kind, start, end in gold:
            same = [f for f in findings if f.kind is kind]
            counts[kind][0] += 1
            counts[kind][1] += _covered(start, end, same, s.text)
        for f in findings:
            counts[f.kind][2] += 1
            counts[f.kind][3] += any(
                k is f.kind and f.start < e and s_ < f.end for k, s_, e in gold
            )
    return {k: KindScore(k, *c) for k, c in counts.items()}


def overall_precision(scores: Mapping[PiiKind, KindScore]) -> float:
    """Correct findings over all findings, every kind together."""
    predicted = sum(s.predicted for s in scores.values())
    return sum(s.correct for s in scores.values()) / predicted if predicted else 1.0


def misses(
    sentences: Sequence[LabelledSentence],
    detect: Callable[[str], Sequence[PiiFinding]] = find_pii,
) -> list[str]:
    """One line per missed gold entity or wrong finding (for tuning; holds the values)."""
    lines: list[str] = []
    for s in sentences:
        findings = list(detect(s.text))
        gold = s.gold_spans()
        for kind, start, end in gold:
            if not _covered(start, end, [f for f in findings if f.kind is kind], s.text):
                lines.append(f"MISS {kind}: {s.text[start:end]!r} in {s.text}")
        for f in findings:
            if not any(k is f.kind and f.start < e and st < f.end for k, st, e in gold):
                lines.append(f"FALSE {f.kind}: {s.text[f.start : f.end]!r} in {s.text}")
    return lines
