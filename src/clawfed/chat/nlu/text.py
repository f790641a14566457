"""Message text normalisation and tokenisation (jieba for Chinese, words for the rest)."""

from __future__ import annotations

import logging
import re
import threading
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

import jieba

#: Frequency given to domain words in jieba's dictionary: high enough that "上月销量" cuts
#: as 上月 / 销量, low enough not to swallow ordinary words around it.
DOMAIN_WORD_FREQ = 50_000

_CJK_CHARS = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CJK_ONLY = re.compile(rf"^[{_CJK_CHARS}]+$")
_RUNS = re.compile(rf"(?P<cjk>[{_CJK_CHARS}]+)|(?P<word>[a-z0-9](?:[a-z0-9_\-.]*[a-z0-9])?)")
_MENTIONS = re.compile(r"^(?:@[^\s/@]+\s*)+")
_SPACES = re.compile(r"\s+")
_JIEBA_LOCK = threading.Lock()


class TokenKind(StrEnum):
    """What a token is made of."""

    CJK = "cjk"
    WORD = "word"  # Latin letters and digits, may hold - _ . inside (job ids: fraud-v2)
    NUMBER = "number"


@dataclass(frozen=True)
class Token:
    """One token of a normalised message, with its character offsets in that message."""

    text: str
    start: int
    end: int
    kind: TokenKind


def _fold(text: str) -> str:
    # lower-case without changing the length, so offsets stay valid on the un-folded text
    return "".join(c.lower() if len(c.lower()) == 1 else c for c in text)


def clean(text: str) -> str:
    """NFKC-normalise ``text`` (full-width ／ becomes /), collapse white space, strip it."""
    return _SPACES.sub(" ", unicodedata.normalize("NFKC", text)).strip()


def strip_mentions(text: str) -> str:
    """Remove leading @mentions ("@clawfed /状态" -> "/状态") from cleaned text."""
    return _MENTIONS.sub("", text).strip()


def normalize(text: str) -> str:
    """Cleaned, mention-free, lower-cased text: what the parsers match words against.

    Lower-casing keeps the length, so offsets into the result are offsets into
    ``strip_mentions(clean(text))`` too.
    """
    return _fold(strip_mentions(clean(text)))


def silence_jieba() -> None:
    """Detach jieba's console handler so it never prints (it logs dictionary loading)."""
    log = logging.getLogger("jieba")
    for handler in list(log.handlers):
        log.removeHandler(handler)
    if not log.handlers:
        log.addHandler(logging.NullHandler())
    log.propagate = False
    log.setLevel(logging.WARNING)


class Tokenizer:
    """Splits normalised text into tokens: Chinese runs through jieba, Latin runs by word.

    Each instance owns its jieba dictionary (the global one is left untouched), extended
    with ``words``; jieba's HMM guessing of unknown words is off so cuts depend on the
    dictionary alone.
    """

    def __init__(self, words: Iterable[str] = ()) -> None:
        silence_jieba()
        self._jieba = jieba.Tokenizer()
        with _JIEBA_LOCK:
            self._jieba.initialize()
            for word in words:
                if _CJK_ONLY.match(word):
                    self._jieba.add_word(word, freq=DOMAIN_WORD_FREQ)

    def tokenize(self, text: str) -> tuple[Token, ...]:
        """Tokenise normalised ``text``; punctuation and spaces are dropped."""
        out: list[Token] = []
        for run in _RUNS.finditer(text):
            if run.group("cjk"):
                base = run.start()
                for word, start, end in self._jieba.tokenize(run.group(), HMM=False):
                    out.append(Token(word, base + start, base + end, TokenKind.CJK))
            else:
                word = run.group()
                kind = TokenKind.NUMBER if word.isdigit() else TokenKind.WORD
                out.append(Token(word, run.start(), run.end(), kind))
        return tuple(out)

    def words(self, text: str) -> tuple[str, ...]:
        """The token texts of ``text`` (normalised first), e.g. for a lexicon alias."""
        return tuple(t.text for t in self.tokenize(normalize(text)))
