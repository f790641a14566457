"""Splitting long chat messages at UTF-8 byte limits, preferring line breaks."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clawfed.chat.text_split import split_chars, split_utf8
from clawfed.core.errors import ConfigError


def test_short_text_is_one_part() -> None:
    assert split_utf8("hello", 2048) == ["hello"]
    assert split_utf8("", 2048) == []


def test_exact_limit_is_not_split() -> None:
    text = "中" * 682 + "ab"  # 2046 + 2 = 2048 bytes
    assert split_utf8(text, 2048) == [text]
    assert len(split_utf8(text + "c", 2048)) == 2


def test_cjk_never_cut_inside_a_character() -> None:
    text = "联邦学习" * 1000  # 12000 bytes, no break points
    parts = split_utf8(text, 2048)
    assert "".join(parts) == text
    assert all(len(p.encode()) <= 2048 for p in parts)
    assert len(parts[0].encode()) == 2046  # 682 whole characters: 2047 would cut one in half


def test_prefers_line_breaks_then_spaces() -> None:
    text = "a" * 10 + "\n" + "b b b b"
    assert split_utf8(text, 14) == ["a" * 10 + "\n", "b b b b"]
    assert split_utf8("xxxx yyyy zzzz", 10) == ["xxxx yyyy ", "zzzz"]
    assert split_utf8("xxxx yyyy zzzz", 9) == ["xxxx ", "yyyy zzzz"]


def test_emoji_of_four_bytes_kept_whole() -> None:
    text = "🙂" * 10
    parts = split_utf8(text, 6)
    assert parts == ["🙂"] * 10


def test_limit_too_small_refused() -> None:
    with pytest.raises(ConfigError, match=">= 4"):
        split_utf8("abc", 3)


@settings(max_examples=200, deadline=None)
@given(text=st.text(min_size=0, max_size=600), limit=st.integers(min_value=4, max_value=80))
def test_split_utf8_properties(text: str, limit: int) -> None:
    parts = split_utf8(text, limit)
    assert "".join(parts) == text
    assert all(0 < len(p.encode()) <= limit for p in parts)


@settings(max_examples=100, deadline=None)
@given(text=st.text(min_size=0, max_size=400), limit=st.integers(min_value=4, max_value=50))
def test_split_chars_properties(text: str, limit: int) -> None:
    parts = split_chars(text, limit)
    assert "".join(parts) == text
    assert all(0 < len(p) <= limit for p in parts)
