"""Time expressions in chat resolved against a fixed "today"."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clawfed.chat.nlu import NluError, TimeRange, parse_intent, period_range, rolling_range
from clawfed.chat.nlu.lexicon import RollingUnit
from clawfed.chat.nlu.timerange import PERIOD_LABELS, month_range, parse_number

TODAY = date(2026, 11, 24)  # Tuesday of ISO week 48


def when(text: str, today: date = TODAY) -> TimeRange | None:
    return parse_intent(text, today=today).slots.time_range


def d(month: int, day: int, year: int = 2026) -> date:
    return date(year, month, day)


@pytest.mark.parametrize(
    ("text", "start", "end", "label"),
    [
        ("上月信贷部准确率", d(10, 1), d(10, 31), "last_month"),
        ("上个月的销量", d(10, 1), d(10, 31), "last_month"),
        ("上周哪个部门贡献最大", d(11, 16), d(11, 22), "last_week"),
        ("上礼拜的损失", d(11, 16), d(11, 22), "last_week"),
        ("上上周的损失", d(11, 9), d(11, 15), "week_before_last"),
        ("本周的训练情况", d(11, 23), d(11, 24), "this_week"),
        ("本月贡献", d(11, 1), d(11, 24), "this_month"),
        ("今天的准确率", d(11, 24), d(11, 24), "today"),
        ("昨天谁访问了", d(11, 23), d(11, 23), "yesterday"),
        ("前天的日志", d(11, 22), d(11, 22), "day_before_yesterday"),
        ("上季度贡献排名", d(7, 1), d(9, 30), "last_quarter"),
        ("本季度贡献排名", d(10, 1), d(11, 24), "this_quarter"),
        ("今年的版本", d(1, 1), d(11, 24), "this_year"),
        ("去年的版本", d(1, 1, 2025), d(12, 31, 2025), "last_year"),
        ("最近7天的召回率", d(11, 18), d(11, 24), "past_7_days"),
        ("近两周的loss", d(11, 11), d(11, 24), "past_2_weeks"),
        ("过去三十天的贡献", d(10, 26), d(11, 24), "past_30_days"),
        ("最近3个月的版本", d(8, 25), d(11, 24), "past_3_months"),
        ("10月的销量", d(10, 1), d(10, 31), "2026-10"),
        ("十二月份的销量", d(12, 1, 2025), d(12, 31, 2025), "2025-12"),
        ("11月的销量", d(11, 1), d(11, 24), "2026-11"),
        ("recall last week", d(11, 16), d(11, 22), "last_week"),
        ("sales last month", d(10, 1), d(10, 31), "last_month"),
        ("loss over the past 3 days", d(11, 22), d(11, 24), "past_3_days"),
        ("error in the last two weeks", d(11, 11), d(11, 24), "past_2_weeks"),
        ("versions this year", d(1, 1), d(11, 24), "this_year"),
    ],
)
def test_time_expressions(text: str, start: date, end: date, label: str) -> None:
    assert when(text) == TimeRange(start, end, label)


def test_no_time_expression_means_no_range() -> None:
    assert when("最近谁访问过合规部数据") is None  # 最近 without a number is no range
    assert when("第3轮训练完了吗") is None
    assert when("the last round") is None


def test_first_expression_wins() -> None:
    r = when("上周和本周的准确率对比")
    assert r is not None and r.label == "last_week"


def test_year_boundaries() -> None:
    monday = date(2026, 1, 5)
    assert when("上周", monday) == TimeRange(d(12, 29, 2025), d(1, 4), "last_week")
    assert when("本周", monday) == TimeRange(monday, monday, "this_week")
    assert when("上月", monday) == TimeRange(d(12, 1, 2025), d(12, 31, 2025), "last_month")
    assert when("上季度", monday) == TimeRange(d(10, 1, 2025), d(12, 31, 2025), "last_quarter")


def test_rolling_month_clamps_short_months() -> None:
    r = rolling_range(1, RollingUnit.MONTH, date(2024, 3, 31))
    assert (r.start, r.end) == (date(2024, 3, 1), date(2024, 3, 31))


@given(st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 12, 31)))
def test_every_period_is_well_formed(today: date) -> None:
    for label in PERIOD_LABELS:
        r = period_range(label, today)
        assert r.start <= r.end <= today
        if label.startswith("last_") or label in {"yesterday", "week_before_last"}:
            assert r.end < today
    lw = period_range("last_week", today)
    assert lw.start.weekday() == 0 and lw.days == 7
    assert lw.end + timedelta(days=1) == today - timedelta(days=today.weekday())
    lm = period_range("last_month", today)
    assert lm.start.day == 1 and (lm.end + timedelta(days=1)) == today.replace(day=1)


@pytest.mark.parametrize(
    ("word", "n"),
    [
        ("7", 7),
        ("七", 7),
        ("两", 2),
        ("十", 10),
        ("十五", 15),
        ("二十", 20),
        ("三十一", 31),
        ("一百", 100),
        ("three", 3),
        ("twenty", 20),
        ("abc", None),
        ("", None),
    ],
)
def test_parse_number(word: str, n: int | None) -> None:
    assert parse_number(word) == n


def test_bad_ranges_are_refused() -> None:
    with pytest.raises(NluError, match="start must be on or before its end"):
        TimeRange(d(11, 2), d(11, 1), "x")
    with pytest.raises(NluError, match="1..999 days, got 0"):
        rolling_range(0, RollingUnit.DAY, TODAY)
    with pytest.raises(NluError, match="unknown time period 'next_week'"):
        period_range("next_week", TODAY)
    with pytest.raises(NluError, match="month must be between 1 and 12, got 13"):
        month_range(13, TODAY)


def test_absurd_rolling_window_is_ignored() -> None:
    assert when("最近5000天的准确率") is None
