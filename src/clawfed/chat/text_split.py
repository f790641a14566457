"""Splitting long messages into parts that fit a chat service's size limit."""

from __future__ import annotations

from collections.abc import Callable

from clawfed.core.errors import ConfigError


def _utf8_prefix(text: str, max_bytes: int) -> int:
    """Number of leading characters of ``text`` whose UTF-8 encoding fits in ``max_bytes``."""
    encoded = text.encode("utf-8")
    if len(encoded) <= max_bytes:
        return len(text)
    cut = max_bytes
    while cut > 0 and (encoded[cut] & 0xC0) == 0x80:  # never cut inside a multi-byte character
        cut -= 1
    return len(encoded[:cut].decode("utf-8"))


def _char_prefix(text: str, max_chars: int) -> int:
    return min(len(text), max_chars)


def _split(text: str, limit: int, fits: Callable[[str, int], int]) -> list[str]:
    if limit < 4:
        raise ConfigError(f"split limit must be >= 4 (one character of any size), got {limit}")
    parts: list[str] = []
    rest = text
    while rest:
        n = fits(rest, limit)
        if n == len(rest):
            parts.append(rest)
            break
        head = rest[:n]
        cut = head.rfind("\n") + 1  # prefer ending a part after a line break
        if cut == 0:
            cut = max(head.rfind(" "), head.rfind("\t")) + 1  # then after whitespace
        if cut == 0:
            cut = n  # no break point: cut at the last whole character
        parts.append(rest[:cut])
        rest = rest[cut:]
    return parts


def split_utf8(text: str, max_bytes: int) -> list[str]:
    """Split text into parts of at most ``max_bytes`` UTF-8 bytes each.

    Parts end after the last line break that fits, else after the last space or tab,
    else at the last whole character; concatenating the parts gives back ``text``.

    Parameters
    ----------
    text
        The text to split ("" gives no parts).
    max_bytes
        Byte budget per part (e.g. 2048 for WeCom text, 4096 for robot markdown).
    """
    return _split(text, max_bytes, _utf8_prefix)


def split_chars(text: str, max_chars: int) -> list[str]:
    """Split text into parts of at most ``max_chars`` characters (rules of ``split_utf8``)."""
    return _split(text, max_chars, _char_prefix)
