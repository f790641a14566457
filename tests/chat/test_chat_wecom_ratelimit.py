"""The sliding-window RateLimiter that queues (returns waits) and never drops."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clawfed.chat.ratelimit import RateLimiter
from clawfed.core.errors import ConfigError


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_twenty_free_slots_then_queue() -> None:
    clock = FakeClock()
    limiter = RateLimiter(20, 60.0, clock=clock)
    assert [limiter.reserve() for _ in range(20)] == [0.0] * 20
    clock.now += 15
    assert limiter.reserve() == pytest.approx(45.0)  # first slot frees at t0 + 60
    assert limiter.reserve() == pytest.approx(45.0)  # the 2nd of the burst too
    assert limiter.pending() == 22


def test_slots_free_up_as_the_window_slides() -> None:
    clock = FakeClock()
    limiter = RateLimiter(2, 10.0, clock=clock)
    assert limiter.reserve() == 0.0
    clock.now += 4
    assert limiter.reserve() == 0.0
    assert limiter.reserve() == pytest.approx(6.0)  # first freed at 10
    clock.now += 6.0
    assert limiter.reserve() == pytest.approx(4.0)  # second freed at 14


def test_penalize_holds_back_later_slots() -> None:
    clock = FakeClock()
    limiter = RateLimiter(20, 60.0, clock=clock)
    limiter.reserve()
    limiter.penalize(60.0)
    assert limiter.reserve() == pytest.approx(60.0)
    clock.now += 60
    assert limiter.reserve() == 0.0


@pytest.mark.parametrize(("args", "match"), [((0, 60.0), "max_events"), ((1, 0.0), "period")])
def test_config_checked(args: tuple[int, float], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        RateLimiter(*args)


@settings(max_examples=100, deadline=None)
@given(
    gaps=st.lists(st.floats(min_value=0, max_value=30, allow_nan=False), min_size=1, max_size=80),
    max_events=st.integers(min_value=1, max_value=6),
)
def test_never_more_than_max_in_any_window_and_never_drops(
    gaps: list[float], max_events: int
) -> None:
    clock = FakeClock()
    limiter = RateLimiter(max_events, 10.0, clock=clock)
    send_times = []
    for gap in gaps:
        clock.now += gap
        wait = limiter.reserve()
        assert wait >= 0
        send_times.append(clock.now + wait)
    assert len(send_times) == len(gaps)  # every request got a slot
    assert send_times == sorted(send_times)  # FIFO: queued senders keep their order
    for t in send_times:  # any window (t - 10, t] holds at most max_events sends
        assert sum(1 for s in send_times if t - 10.0 + 1e-6 < s <= t) <= max_events
