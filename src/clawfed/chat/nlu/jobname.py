"""Finding the job a chat question is about ("反欺诈任务", "job fraud-v2", "批准 反欺诈")."""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from clawfed.chat.nlu.gazetteer import Category, Match
from clawfed.chat.nlu.text import Token, TokenKind

_MAX_NAME_TOKENS = 4
_ID_LIKE = re.compile(r"^(?=.*[a-z])(?=.*[0-9_\-])[a-z0-9][a-z0-9_\-.]*$")


@dataclass(frozen=True)
class JobSpan:
    """A job name found at characters ``start``..``end``; ``noun`` is the token that marked it."""

    start: int
    end: int
    noun: int | None = None


class _View:
    """Per-token facts the rules below ask about."""

    def __init__(
        self, text: str, tokens: Sequence[Token], matches: Sequence[Match], blocked: Collection[int]
    ) -> None:
        self.text = text
        self.tokens = tokens
        self.blocked = blocked
        self.at: dict[int, Match] = {}
        for m in matches:
            for i in range(m.first, m.last):
                self.at[i] = m

    def content(self, i: int) -> bool:
        """A token that belongs to no lexicon word and no time expression."""
        return i not in self.blocked and i not in self.at

    def nameable(self, i: int) -> bool:
        """May be part of a job name: content, or a bare metric word (销量 in 销量预测)."""
        m = self.at.get(i)
        if i in self.blocked:
            return False
        return m is None or all(e.category is Category.METRIC for e in m.entries)

    def filler(self, i: int) -> bool:
        m = self.at.get(i)
        return m is not None and all(e.category is Category.FILLER for e in m.entries)

    def noun(self, i: int) -> bool:
        m = self.at.get(i)
        return m is not None and bool(m.of(Category.JOB_NOUN))

    def adjacent(self, i: int, j: int) -> bool:
        """Tokens ``i`` < ``j`` are neighbours separated by nothing but white space."""
        return j == i + 1 and not self.text[self.tokens[i].end : self.tokens[j].start].strip()

    def span(self, first: int, last: int, noun: int | None) -> JobSpan | None:
        """Job span over tokens first..last (inclusive) if one of them is real content."""
        if not any(self.content(k) for k in range(first, last + 1)):
            return None
        return JobSpan(self.tokens[first].start, self.tokens[last].end, noun)


def _before_noun(v: _View, noun: int) -> JobSpan | None:
    first = noun
    while (
        first - 1 >= 0
        and noun - (first - 1) <= _MAX_NAME_TOKENS
        and v.adjacent(first - 1, first)
        and v.nameable(first - 1)
    ):
        first -= 1
    return v.span(first, noun - 1, noun) if first < noun else None


def _after_noun(v: _View, noun: int) -> JobSpan | None:
    nxt = noun + 1
    if nxt < len(v.tokens) and v.content(nxt) and v.tokens[nxt].kind is TokenKind.WORD:
        return v.span(nxt, nxt, noun)
    return None


def _after_verb(v: _View, verb_end: int) -> JobSpan | None:
    i = verb_end
    while i < len(v.tokens) and v.filler(i):
        i += 1
    if i >= len(v.tokens) or not v.content(i):
        return None
    last = i
    while (
        last + 1 < len(v.tokens)
        and last + 1 - i < _MAX_NAME_TOKENS
        and v.adjacent(last, last + 1)
        and v.content(last + 1)
    ):
        last += 1
    return v.span(i, last, None)


def find_job(
    text: str,
    tokens: Sequence[Token],
    matches: Sequence[Match],
    blocked: Collection[int],
    object_intents: Collection[str],
) -> JobSpan | None:
    """Locate a job name by these rules, first hit wins.

    1. Words right before a job noun (任务 / 项目 / job …): "反欺诈任务", "the fraud job";
       a metric word may be part of the name ("销量预测任务").
    2. An English word right after a job noun: "job fraud-v2", "任务 credit-risk".
    3. Words right after a trigger of an intent in ``object_intents`` (fillers skipped):
       "批准 反欺诈", "approve credit-risk".
    4. Any id-like word (letters with digits, ``-`` or ``_``): "fraud-v2".
    """
    v = _View(text, tokens, matches, blocked)
    nouns = [i for i in range(len(tokens)) if v.noun(i)]
    for rule in (_before_noun, _after_noun):
        for n in nouns:
            hit = rule(v, n)
            if hit is not None:
                return hit
    for m in matches:
        if any(e.category is Category.TRIGGER and e.key in object_intents for e in m.entries):
            hit = _after_verb(v, m.last)
            if hit is not None:
                return hit
    for i, tok in enumerate(tokens):
        if v.content(i) and tok.kind is TokenKind.WORD and _ID_LIKE.match(tok.text):
            return v.span(i, i, None)
    return None
