"""Intent and slot accuracy of the chat parser on labelled utterances (tuning and held-out)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
import yaml

from clawfed.chat.nlu import Intent, Parsed, default_parser

DATA = Path(__file__).resolve().parents[1] / "data"

SlotKey = tuple[str | None, tuple[str, ...], tuple[str, ...], str | None, str | None]


@dataclass(frozen=True)
class Case:
    text: str
    intent: Intent
    slots: SlotKey


@dataclass(frozen=True)
class Score:
    intent_acc: float
    slot_acc: float
    misses: tuple[str, ...]


def _expected(raw: dict[str, object]) -> SlotKey:
    def many(one: str, several: str) -> tuple[str, ...]:
        if raw.get(several):
            return tuple(raw[several])  # type: ignore[arg-type]
        return (str(raw[one]),) if raw.get(one) else ()

    job = raw.get("job")
    metric = raw.get("metric")
    label = raw.get("time_range")
    return (
        None if job is None else str(job),
        many("department", "departments"),
        many("region", "regions"),
        None if metric is None else str(metric),
        None if label is None else str(label),
    )


def _got(p: Parsed) -> SlotKey:
    s = p.slots
    label = s.time_range.label if s.time_range else None
    return (s.job, s.departments, s.regions, s.metric, label)


def load(name: str) -> tuple[date, list[Case]]:
    doc = yaml.safe_load((DATA / name).read_text(encoding="utf-8"))
    cases = [
        Case(u["text"], Intent(u["intent"]), _expected(u.get("slots") or {}))
        for u in doc["utterances"]
    ]
    return doc["today"], cases


def evaluate(name: str) -> Score:
    today, cases = load(name)
    parser = default_parser()
    intent_ok = slot_ok = slot_n = 0
    misses = []
    for c in cases:
        p = parser.parse(c.text, today=today)
        good_intent = p.intent is c.intent
        intent_ok += good_intent
        good_slots = True
        if c.intent is not Intent.UNKNOWN:  # slots of off-topic chatter are not labelled
            slot_n += 1
            good_slots = _got(p) == c.slots
            slot_ok += good_slots
        if not (good_intent and good_slots):
            misses.append(
                f"{c.text!r}: intent {p.intent} (want {c.intent}), "
                f"slots {_got(p)} (want {c.slots}), evidence {p.evidence}"
            )
    return Score(intent_ok / len(cases), slot_ok / slot_n, tuple(misses))


def test_labelled_sets_are_big_enough_and_varied() -> None:
    _, tune = load("utterances.yaml")
    _, held = load("utterances_holdout.yaml")
    assert len(tune) >= 100
    assert 0.2 <= len(held) / (len(tune) + len(held)) <= 0.3
    assert sum(c.intent is Intent.UNKNOWN for c in tune) >= 10
    assert {c.intent for c in tune} == set(Intent)
    english = [c for c in tune if c.text.isascii()]
    assert 10 <= len(english) < len(tune) / 2
    assert not {c.text for c in tune} & {c.text for c in held}, "held-out must be unseen"


@pytest.mark.parametrize(
    ("name", "bar"), [("utterances.yaml", 0.90), ("utterances_holdout.yaml", 0.85)]
)
def test_accuracy(name: str, bar: float) -> None:
    score = evaluate(name)
    report = "\n".join(score.misses)
    assert score.intent_acc >= bar, f"intent accuracy {score.intent_acc:.3f} < {bar}:\n{report}"
    assert score.slot_acc >= bar, f"slot accuracy {score.slot_acc:.3f} < {bar}:\n{report}"
