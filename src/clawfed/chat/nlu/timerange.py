"""Time expressions in chat ("上周", "最近7天", "last month") resolved to date ranges."""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta

from clawfed.chat.nlu.errors import LexiconError, NluError
from clawfed.chat.nlu.lexicon import Lexicon, RollingUnit

#: The calendar periods the lexicon may name; "this …" periods run up to and including today.
PERIOD_LABELS = (
    "today",
    "yesterday",
    "day_before_yesterday",
    "this_week",
    "last_week",
    "week_before_last",
    "this_month",
    "last_month",
    "this_quarter",
    "last_quarter",
    "this_year",
    "last_year",
)

_MAX_ROLLING = 999
_CN_DIGITS = dict(zip("零一二三四五六七八九", range(10), strict=True)) | {"两": 2}
_EN_NUMBERS = (
    "one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen twenty"
).split()
_EN_NUMBERS_MAP = {w: i + 1 for i, w in enumerate(_EN_NUMBERS)} | {"thirty": 30, "ninety": 90}
_CN_NUM = "[零一二两三四五六七八九十百]{1,4}"
_MONTH = re.compile(
    r"(?<![0-9上本这当个下每前后])(?P<m>1[0-2]|0?[1-9]|十[一二]?|[一二三四五六七八九])月份?(?![0-9])"
)


@dataclass(frozen=True)
class TimeRange:
    """An inclusive range of calendar days, with a language-neutral label.

    ``label`` is ``today``, ``last_week`` … (see :data:`PERIOD_LABELS`), ``past_7_days`` /
    ``past_2_weeks`` / ``past_3_months`` for rolling windows ending today, or ``2026-10``
    for a named month.
    """

    start: date
    end: date
    label: str

    def __post_init__(self) -> None:
        if self.start > self.end:
            raise NluError(
                f"time range start must be on or before its end, got {self.start} > {self.end}"
            )
        if not self.label:
            raise NluError("time range label must not be empty")

    @property
    def days(self) -> int:
        """Number of calendar days covered, both ends included."""
        return (self.end - self.start).days + 1


@dataclass(frozen=True)
class TimeMatch:
    """A time expression found in a text: the range and where it sits (character offsets)."""

    range: TimeRange
    start: int
    end: int


def _add_months(d: date, months: int) -> date:
    idx = d.year * 12 + (d.month - 1) + months
    year, month = divmod(idx, 12)
    day = min(d.day, calendar.monthrange(year, month + 1)[1])
    return date(year, month + 1, day)


def _month_bounds(year: int, month: int) -> tuple[date, date]:
    return date(year, month, 1), date(year, month, calendar.monthrange(year, month)[1])


def period_range(label: str, today: date) -> TimeRange:
    """Resolve a calendar period label against ``today``.

    Weeks are ISO weeks (Monday to Sunday). Past periods are whole; current periods
    ("this_week", "this_month", …) end today.

    Raises
    ------
    NluError
        If ``label`` is not one of :data:`PERIOD_LABELS`.
    """
    monday = today - timedelta(days=today.weekday())
    q_first = 3 * ((today.month - 1) // 3) + 1
    match label:
        case "today":
            return TimeRange(today, today, label)
        case "yesterday":
            d = today - timedelta(days=1)
            return TimeRange(d, d, label)
        case "day_before_yesterday":
            d = today - timedelta(days=2)
            return TimeRange(d, d, label)
        case "this_week":
            return TimeRange(monday, today, label)
        case "last_week":
            return TimeRange(monday - timedelta(days=7), monday - timedelta(days=1), label)
        case "week_before_last":
            return TimeRange(monday - timedelta(days=14), monday - timedelta(days=8), label)
        case "this_month":
            return TimeRange(today.replace(day=1), today, label)
        case "last_month":
            prev = _add_months(today.replace(day=1), -1)
            return TimeRange(*_month_bounds(prev.year, prev.month), label)
        case "this_quarter":
            return TimeRange(date(today.year, q_first, 1), today, label)
        case "last_quarter":
            start = _add_months(date(today.year, q_first, 1), -3)
            end = date(today.year, q_first, 1) - timedelta(days=1)
            return TimeRange(start, end, label)
        case "this_year":
            return TimeRange(date(today.year, 1, 1), today, label)
        case "last_year":
            return TimeRange(date(today.year - 1, 1, 1), date(today.year - 1, 12, 31), label)
    raise NluError(f"unknown time period {label!r}; known: {list(PERIOD_LABELS)}")


def rolling_range(n: int, unit: RollingUnit, today: date) -> TimeRange:
    """The ``n`` days / weeks / months ending today (inclusive), labelled ``past_{n}_{unit}s``.

    Raises
    ------
    NluError
        If ``n`` is not between 1 and 999.
    """
    if not 1 <= n <= _MAX_ROLLING:
        raise NluError(f"a rolling window must span 1..{_MAX_ROLLING} {unit}s, got {n}")
    if unit is RollingUnit.DAY:
        start = today - timedelta(days=n - 1)
    elif unit is RollingUnit.WEEK:
        start = today - timedelta(days=7 * n - 1)
    else:
        start = _add_months(today, -n) + timedelta(days=1)
    return TimeRange(start, today, f"past_{n}_{unit}s")


def month_range(month: int, today: date) -> TimeRange:
    """A named month ("10月"): this year's if it has begun, else last year's; ends by today.

    Raises
    ------
    NluError
        If ``month`` is not between 1 and 12.
    """
    if not 1 <= month <= 12:
        raise NluError(f"month must be between 1 and 12, got {month}")
    year = today.year if month <= today.month else today.year - 1
    start, end = _month_bounds(year, month)
    return TimeRange(start, min(end, today), f"{year:04d}-{month:02d}")


def parse_number(text: str) -> int | None:
    """Read a small number written in digits, Chinese numerals ("二十五") or English words."""
    if text.isdigit():
        return int(text)
    if text in _EN_NUMBERS_MAP:
        return _EN_NUMBERS_MAP[text]
    if not text or any(ch not in _CN_DIGITS and ch not in "十百" for ch in text):
        return None
    total, current = 0, 0
    for ch in text:
        if ch == "百":
            total += (current or 1) * 100
            current = 0
        elif ch == "十":
            total += (current or 1) * 10
            current = 0
        else:
            current = current * 10 + _CN_DIGITS[ch]
    return total + current


def _alternation(words: Iterable[str]) -> str:
    parts = []
    for w in sorted(set(words), key=lambda s: (-len(s), s)):
        body = r"\s+".join(re.escape(p) for p in w.split())
        if w[0].isascii() and w[0].isalnum():
            body = r"(?<![a-z0-9])" + body
        if w[-1].isascii() and w[-1].isalnum():
            body += r"(?![a-z0-9])"
        parts.append(body)
    return "|".join(parts)


class TimeExtractor:
    """Finds the first time expression in a normalised message, using a lexicon's words."""

    def __init__(self, lexicon: Lexicon) -> None:
        unknown = set(lexicon.periods) - set(PERIOD_LABELS)
        if unknown:
            raise LexiconError(
                f"lexicon periods name unknown labels {sorted(unknown)}; "
                f"known: {list(PERIOD_LABELS)}"
            )
        self._periods: list[tuple[str, re.Pattern[str]]] = [
            (label, re.compile(_alternation(aliases))) for label, aliases in lexicon.periods.items()
        ]
        self._unit_of = {w: u for u, words in lexicon.rolling_units.items() for w in words}
        number = "|".join([r"\d{1,3}", _CN_NUM, *sorted(_EN_NUMBERS_MAP, key=len, reverse=True)])
        self._rolling = re.compile(
            rf"(?:{_alternation(lexicon.rolling_prefixes)})\s*(?P<n>{number})\s*"
            rf"(?P<unit>{_alternation(self._unit_of)})"
        )

    def find(self, text: str, today: date) -> TimeMatch | None:
        """Return the leftmost (then longest) time expression in ``text``, or None."""
        found: list[TimeMatch] = []
        for label, pattern in self._periods:
            m = pattern.search(text)
            if m:
                found.append(TimeMatch(period_range(label, today), m.start(), m.end()))
        for m in self._rolling.finditer(text):
            n = parse_number(m.group("n"))
            unit = self._unit_of[" ".join(m.group("unit").split())]
            if n is not None and 1 <= n <= _MAX_ROLLING:
                found.append(TimeMatch(rolling_range(n, unit, today), m.start(), m.end()))
                break
        for m in _MONTH.finditer(text):
            month = parse_number(m.group("m").lstrip("0"))
            if month is not None and 1 <= month <= 12:
                found.append(TimeMatch(month_range(month, today), m.start(), m.end()))
                break
        if not found:
            return None
        return min(found, key=lambda t: (t.start, -(t.end - t.start)))
