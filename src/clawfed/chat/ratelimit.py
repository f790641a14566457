"""A sliding-window rate limiter that queues senders instead of dropping messages."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from clawfed.core.errors import ConfigError


class RateLimiter:
    """Allows at most ``max_events`` sends in any ``period`` seconds by handing out send slots.

    ``reserve()`` books the earliest free slot and returns how long the caller must wait
    before sending; it never refuses, so no message is ever dropped on the limit.

    Parameters
    ----------
    max_events
        Sends allowed per window (20 for the WeCom group robot and DingTalk robots).
    period
        Window length in seconds.
    clock
        Monotonic seconds (default ``time.monotonic``), injectable for tests.
    """

    def __init__(
        self,
        max_events: int = 20,
        period: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_events < 1:
            raise ConfigError(f"max_events must be >= 1, got {max_events}")
        if period <= 0:
            raise ConfigError(f"period must be > 0 s, got {period}")
        self.max_events = max_events
        self.period = period
        self._clock = clock
        self._slots: deque[float] = deque()
        self._blocked_until = float("-inf")
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Book the next send slot and return the seconds to wait before using it (>= 0)."""
        with self._lock:
            now = self._clock()
            while self._slots and self._slots[0] <= now - self.period:
                self._slots.popleft()
            slot = max(now, self._blocked_until)
            if len(self._slots) >= self.max_events:
                slot = max(slot, self._slots[-self.max_events] + self.period)
            self._slots.append(slot)
            return slot - now

    def penalize(self, seconds: float) -> None:
        """Hold back every later slot until ``seconds`` from now (after "too fast" replies)."""
        if seconds < 0:
            raise ConfigError(f"penalty must be >= 0 s, got {seconds}")
        with self._lock:
            self._blocked_until = max(self._blocked_until, self._clock() + seconds)

    def pending(self) -> int:
        """Number of booked slots still inside the current window (for tests and metrics)."""
        with self._lock:
            now = self._clock()
            return sum(1 for slot in self._slots if slot > now - self.period)
