"""Longest-match lookup of lexicon words in a token stream, tolerant of one-letter typos."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from enum import StrEnum

from clawfed.chat.nlu.lexicon import Lexicon
from clawfed.chat.nlu.text import Token, Tokenizer, TokenKind

_MAX_ALIAS_TOKENS = 5
_FUZZY_CJK_MIN = 3  # shorter Chinese words are too easily one character away from another
_FUZZY_WORD_MIN = 5


class Category(StrEnum):
    """What a lexicon word stands for."""

    DEPARTMENT = "department"
    REGION = "region"
    METRIC = "metric"
    TRIGGER = "trigger"
    JOB_NOUN = "job_noun"
    FILLER = "filler"


@dataclass(frozen=True)
class Entry:
    """One meaning of an alias: its category, canonical key (intent name for triggers), points."""

    category: Category
    key: str
    alias: str
    weight: int = 0


@dataclass(frozen=True)
class Match:
    """Tokens ``first``..``last`` (exclusive) read as ``entries``; ``fuzzy`` if via a typo."""

    entries: tuple[Entry, ...]
    first: int
    last: int
    start: int
    end: int
    fuzzy: bool = False

    def of(self, category: Category) -> tuple[Entry, ...]:
        """The entries of one category."""
        return tuple(e for e in self.entries if e.category is category)


def within_one_edit(a: str, b: str) -> bool:
    """True when ``a`` and ``b`` differ by at most one insertion, deletion or substitution."""
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        return sum(x != y for x, y in zip(a, b, strict=True)) <= 1
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    return any(long_[:i] + long_[i + 1 :] == short for i in range(len(long_)))


class Gazetteer:
    """All lexicon words as token sequences, looked up longest-first, left to right."""

    def __init__(self, lexicon: Lexicon, tokenizer: Tokenizer) -> None:
        table: dict[tuple[str, ...], list[Entry]] = {}

        def add(alias: str, entry: Entry) -> None:
            key = tokenizer.words(alias)
            if key and entry not in table.setdefault(key, []):
                table[key].append(entry)

        for term in lexicon.departments:
            for a in term.aliases:
                add(a, Entry(Category.DEPARTMENT, term.key, a))
        for term in lexicon.regions:
            for a in term.aliases:
                add(a, Entry(Category.REGION, term.key, a))
        for metric in lexicon.metrics:
            for a in metric.aliases:
                add(a, Entry(Category.METRIC, metric.key, a))
        for rule in lexicon.intents:
            for a in rule.strong:
                add(a, Entry(Category.TRIGGER, rule.name, a, lexicon.strong_weight))
            for a in rule.weak:
                add(a, Entry(Category.TRIGGER, rule.name, a, lexicon.weak_weight))
        for a in lexicon.job_nouns:
            add(a, Entry(Category.JOB_NOUN, a, a))
        for a in lexicon.fillers:
            add(a, Entry(Category.FILLER, a, a))
        self._table = {k: tuple(v) for k, v in table.items()}
        self._longest = min(_MAX_ALIAS_TOKENS, max(len(k) for k in self._table))
        # Typos are forgiven in names (departments, regions, metrics) and, in English, in
        # strong trigger words; Chinese trigger phrases are built of everyday characters
        # ("怎么用" is one character from "怎么办"), so they must be typed exactly.
        strong = lexicon.strong_weight
        fuzzy: list[tuple[str, Entry]] = []
        for words, entries in self._table.items():
            if len(words) != 1 or any(e.category is Category.FILLER for e in entries):
                continue
            for e in entries:
                named = e.category in (Category.DEPARTMENT, Category.REGION, Category.METRIC)
                english_trigger = (
                    e.category is Category.TRIGGER and e.weight >= strong and words[0].isascii()
                )
                if named or english_trigger:
                    fuzzy.append((words[0], e))
        self._fuzzy = tuple(fuzzy)

    def lookup(self, words: tuple[str, ...]) -> tuple[Entry, ...]:
        """The entries of an exact token sequence (empty when it is no lexicon word)."""
        return self._table.get(words, ())

    def match(self, text: str, tokens: Sequence[Token], blocked: Collection[int]) -> list[Match]:
        """Find lexicon words in ``tokens`` (of ``text``), skipping indices in ``blocked``.

        Exact matches are taken longest first, left to right; then runs of unmatched
        tokens are tried against single words with one typo (one Chinese character of a
        word of at least three, or one letter of an English word of at least five).
        """
        found: list[Match] = []
        taken: set[int] = set(blocked)
        i = 0
        while i < len(tokens):
            hit = None if i in taken else self._exact_at(text, tokens, i, taken)
            if hit is None:
                i += 1
                continue
            found.append(hit)
            taken.update(range(hit.first, hit.last))
            i = hit.last
        for i in range(len(tokens)):
            if i not in taken:
                hit = self._fuzzy_at(text, tokens, i, taken)
                if hit is not None:
                    found.append(hit)
                    taken.update(range(hit.first, hit.last))
        return sorted(found, key=lambda m: m.first)

    def _exact_at(
        self, text: str, tokens: Sequence[Token], i: int, taken: Collection[int]
    ) -> Match | None:
        for n in range(min(self._longest, len(tokens) - i), 0, -1):
            span = range(i, i + n)
            if any(j in taken for j in span) or not _adjacent(text, tokens, i, i + n):
                continue
            entries = self._table.get(tuple(tokens[j].text for j in span))
            if entries:
                return Match(entries, i, i + n, tokens[i].start, tokens[i + n - 1].end)
        return None

    def _fuzzy_at(
        self, text: str, tokens: Sequence[Token], i: int, taken: Collection[int]
    ) -> Match | None:
        for n in (3, 2, 1):
            span = range(i, i + n)
            if i + n > len(tokens) or any(j in taken for j in span):
                continue
            kinds = {tokens[j].kind for j in span}
            if not _adjacent(text, tokens, i, i + n) or len(kinds) != 1:
                continue
            word = "".join(tokens[j].text for j in span)
            if kinds == {TokenKind.CJK}:
                ok = len(word) >= _FUZZY_CJK_MIN
            else:
                ok = n == 1 and kinds == {TokenKind.WORD} and len(word) >= _FUZZY_WORD_MIN
            if not ok:
                continue
            hits = {
                (e.category, e.key): e
                for alias, e in self._fuzzy
                if len(alias) >= len(word) - 1
                and alias.isascii() == word.isascii()
                and alias != word
                and (len(alias) == len(word) if kinds == {TokenKind.CJK} else True)
                and within_one_edit(alias, word)
            }
            if len(hits) == 1:
                entry = next(iter(hits.values()))
                return Match((entry,), i, i + n, tokens[i].start, tokens[i + n - 1].end, True)
        return None


def _adjacent(text: str, tokens: Sequence[Token], first: int, last: int) -> bool:
    """True when only white space separates tokens ``first``..``last``."""
    return all(
        not text[tokens[j].end : tokens[j + 1].start].strip() for j in range(first, last - 1)
    )
