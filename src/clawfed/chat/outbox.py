"""A persistent chat outbox: messages are SQL rows, sent by a background loop with retries."""

from __future__ import annotations

import base64
import binascii
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from sqlalchemy import delete, func, select

from clawfed.chat.channel import Channel, MessageKind, OutgoingMessage
from clawfed.chat.errors import ChannelError, ChatError
from clawfed.chat.text_split import split_utf8
from clawfed.chat.wecom_messages import TEXT_MAX_BYTES
from clawfed.core.errors import ClawfedError, ConfigError
from clawfed.governance._common import now_utc, utc
from clawfed.governance.db import Database
from clawfed.governance.outbox_tables import ChatOutboxRow

_log = logging.getLogger(__name__)

MAX_CHANNEL_NAME = 64
MAX_TARGET = 256
_BATCH = 500


class OutboxStatus(StrEnum):
    """Delivery state of an outbox row."""

    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


@dataclass(frozen=True)
class RateWindow:
    """At most ``max_events`` sends through one channel in any ``period`` seconds."""

    max_events: int
    period: float

    def __post_init__(self) -> None:
        if self.max_events < 1:
            raise ConfigError(f"rate window max_events must be >= 1, got {self.max_events}")
        if self.period <= 0:
            raise ConfigError(f"rate window period must be > 0 s, got {self.period}")


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff for retryable failures: ``base * 2**(attempt-1)``, capped.

    After ``max_attempts`` failed attempts a row is marked failed.
    """

    base_s: float = 2.0
    max_backoff_s: float = 600.0
    max_attempts: int = 10

    def __post_init__(self) -> None:
        if self.base_s <= 0 or self.max_backoff_s < self.base_s:
            raise ConfigError(
                f"backoff needs 0 < base_s <= max_backoff_s, "
                f"got {self.base_s}, {self.max_backoff_s}"
            )
        if self.max_attempts < 1:
            raise ConfigError(f"max_attempts must be >= 1, got {self.max_attempts}")

    def delay(self, attempts: int) -> float:
        """Seconds to wait after the ``attempts``-th failed attempt."""
        return min(self.max_backoff_s, self.base_s * 2.0 ** min(attempts - 1, 60))


class ChannelDirectory(Protocol):
    """Finds the channel that delivers to ``target`` ("" = the channel's own default)."""

    def channel(self, name: str, target: str) -> Channel:
        """The channel called ``name`` addressed to ``target``; ``ConfigError`` if unknown."""
        ...


class StaticChannels:
    """A fixed set of channels by name, each with one destination (targets are refused)."""

    def __init__(self, channels: Mapping[str, Channel]) -> None:
        self._channels = dict(channels)

    def channel(self, name: str, target: str) -> Channel:
        """The channel ``name``; a non-empty ``target`` is a ``ConfigError``."""
        if name not in self._channels:
            raise ConfigError(f"no chat channel named {name!r}; known: {sorted(self._channels)}")
        if target:
            raise ConfigError(f"chat channel {name!r} has a fixed destination, got {target!r}")
        return self._channels[name]


@dataclass(frozen=True)
class OutboxItem:
    """One outbox row, as stored."""

    id: int
    channel: str
    target: str
    kind: MessageKind
    message: OutgoingMessage
    attempts: int
    next_attempt_at: datetime
    status: OutboxStatus
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None


def message_to_payload(message: OutgoingMessage) -> dict[str, Any]:
    """The JSON form of a message (image bytes in base64)."""
    payload: dict[str, Any] = {"text": message.text, "mentions": list(message.mentions)}
    if message.image is not None:
        payload["image"] = base64.b64encode(message.image).decode("ascii")
    return payload


def message_from_payload(kind: str, payload: Mapping[str, Any]) -> OutgoingMessage:
    """Rebuild a message stored by :func:`message_to_payload`; ``ChatError`` if malformed."""
    try:
        image_b64 = payload.get("image")
        image = None if image_b64 is None else base64.b64decode(str(image_b64), validate=True)
        return OutgoingMessage(
            MessageKind(kind),
            text=str(payload.get("text", "")),
            image=image,
            mentions=tuple(str(m) for m in payload.get("mentions", ())),
        )
    except (ValueError, TypeError, binascii.Error) as exc:
        raise ChatError(f"stored outbox message of kind {kind!r} is malformed: {exc}") from exc


def split_message(message: OutgoingMessage, part_bytes: int) -> list[OutgoingMessage]:
    """Split a text or markdown message into parts of at most ``part_bytes`` UTF-8 bytes.

    Mentions ride on the first part; images are never split.
    """
    if message.kind is MessageKind.IMAGE or len(message.text.encode("utf-8")) <= part_bytes:
        return [message]
    parts = [p for p in split_utf8(message.text, part_bytes) if p.strip()]
    return [
        OutgoingMessage(message.kind, text=p, mentions=message.mentions if i == 0 else ())
        for i, p in enumerate(parts)
    ]


def _item(row: ChatOutboxRow) -> OutboxItem:
    return OutboxItem(
        id=row.id, channel=row.channel, target=row.target, kind=MessageKind(row.kind),
        message=message_from_payload(row.kind, row.payload), attempts=row.attempts,
        next_attempt_at=row.next_attempt_at, status=OutboxStatus(row.status),
        last_error=row.last_error, created_at=row.created_at, sent_at=row.sent_at,
    )  # fmt: skip


class Outbox:
    """Chat messages to send, kept in the SQL store and delivered by one sender loop.

    Messages of one (channel, target) pair go out in the order they were queued; a message
    that must wait (rate window, retry backoff) holds back the ones queued after it.
    Retryable ``ChannelError``s are retried with exponential backoff (at least the
    service's ``retry_after``); any other failure marks the row failed with the error.
    Rows left pending by a stopped process are sent by the next one on the same database.
    Run one sender per database.

    Parameters
    ----------
    db
        The store (its schema must include the ``chat_outbox`` table).
    channels
        Resolves a row's channel name and target to a ``Channel``.
    limits
        Per channel name, the send rate to stay under (e.g. 20 per 60 s for a WeCom robot);
        the window is rebuilt from the stored send times when an outbox starts.
    retry
        Backoff and attempt limit for retryable failures.
    part_bytes
        Texts longer than this (UTF-8 bytes) are queued as several messages.
    clock
        Timezone-aware "now" (injectable for tests).
    poll_interval
        Longest the sender loop sleeps before looking at the store again.
    """

    def __init__(
        self,
        db: Database,
        channels: ChannelDirectory,
        *,
        limits: Mapping[str, RateWindow] | None = None,
        retry: RetryPolicy | None = None,
        part_bytes: int = TEXT_MAX_BYTES,
        clock: Callable[[], datetime] = now_utc,
        poll_interval: float = 1.0,
    ) -> None:
        if part_bytes < 64:
            raise ConfigError(f"part_bytes must be >= 64, got {part_bytes}")
        if poll_interval <= 0:
            raise ConfigError(f"poll_interval must be > 0 s, got {poll_interval}")
        self._db = db
        self._channels = channels
        self._limits = dict(limits or {})
        self._retry = retry or RetryPolicy()
        self._part_bytes = part_bytes
        self._clock = clock
        self._poll = poll_interval
        self._windows: dict[str, deque[float]] = {}
        self._send_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._load_windows()

    # ---- queueing -------------------------------------------------------------------
    def enqueue(self, channel: str, message: OutgoingMessage, target: str = "") -> list[int]:
        """Queue ``message`` for ``channel`` (and ``target``); return the row ids (one per part).

        Raises
        ------
        ConfigError
            The channel name or target is empty / too long.
        StoreError
            The store refused the rows (nothing is queued then).
        """
        if not channel or len(channel) > MAX_CHANNEL_NAME or channel != channel.strip():
            raise ConfigError(f"outbox channel must be a name of 1..64 characters, got {channel!r}")
        if len(target) > MAX_TARGET or target != target.strip():
            raise ConfigError(
                f"outbox target must be <= {MAX_TARGET} trimmed chars, got {target!r}"
            )
        now = utc(self._clock(), "outbox clock")
        rows = [
            ChatOutboxRow(
                channel=channel,
                target=target,
                kind=part.kind.value,
                payload=message_to_payload(part),
                attempts=0,
                next_attempt_at=now,
                status=OutboxStatus.PENDING.value,
                last_error=None,
                created_at=now,
                sent_at=None,
            )  # fmt: skip
            for part in split_message(message, self._part_bytes)
        ]
        with self._db.session() as s:
            s.add_all(rows)
            s.flush()
            ids = [r.id for r in rows]
        self._wake.set()
        return ids

    def items(self, status: OutboxStatus | None = None) -> list[OutboxItem]:
        """Every row (with ``status`` if given), oldest first."""
        stmt = select(ChatOutboxRow).order_by(ChatOutboxRow.id)
        if status is not None:
            stmt = stmt.where(ChatOutboxRow.status == OutboxStatus(status).value)
        with self._db.session() as s:
            return [_item(r) for r in s.scalars(stmt)]

    def counts(self) -> dict[OutboxStatus, int]:
        """How many rows are in each state."""
        stmt = select(ChatOutboxRow.status, func.count()).group_by(ChatOutboxRow.status)
        out = dict.fromkeys(OutboxStatus, 0)
        with self._db.session() as s:
            for status, n in s.execute(stmt):
                out[OutboxStatus(status)] = int(n)
        return out

    def purge(self, before: datetime) -> int:
        """Delete rows sent or failed before ``before``; return how many were deleted.

        Pending rows are never deleted. Keep at least the longest rate window of sent rows
        (the window is rebuilt from them after a restart).
        """
        cutoff = utc(before, "purge cutoff")
        stmt = delete(ChatOutboxRow).where(
            ChatOutboxRow.status != OutboxStatus.PENDING.value,
            func.coalesce(ChatOutboxRow.sent_at, ChatOutboxRow.next_attempt_at) < cutoff,
        )
        with self._db.session() as s:
            result = s.execute(stmt)
            return int(getattr(result, "rowcount", 0) or 0)

    # ---- sending --------------------------------------------------------------------
    def _load_windows(self) -> None:
        """Rebuild each rate window from the send times stored in the last period."""
        if not self._limits:
            return
        now = utc(self._clock(), "outbox clock")
        longest = max(w.period for w in self._limits.values())
        stmt = (
            select(ChatOutboxRow.channel, ChatOutboxRow.sent_at)
            .where(ChatOutboxRow.sent_at >= now - timedelta(seconds=longest))
            .order_by(ChatOutboxRow.sent_at)
        )
        with self._db.session() as s:
            for channel, sent_at in s.execute(stmt):
                if channel in self._limits and sent_at is not None:
                    self._windows.setdefault(channel, deque()).append(sent_at.timestamp())

    def _window_wait(self, channel: str, now: float) -> float:
        """Seconds until ``channel`` may send again (0 when it may send now)."""
        limit = self._limits.get(channel)
        if limit is None:
            return 0.0
        window = self._windows.setdefault(channel, deque())
        while window and window[0] <= now - limit.period:
            window.popleft()
        if len(window) < limit.max_events:
            return 0.0
        return window[-limit.max_events] + limit.period - now

    def run_once(self) -> int:
        """Try every due message once; return how many send attempts were made."""
        with self._send_lock:
            now = utc(self._clock(), "outbox clock")
            stmt = (
                select(ChatOutboxRow)
                .where(ChatOutboxRow.status == OutboxStatus.PENDING.value)
                .order_by(ChatOutboxRow.id)
                .limit(_BATCH)
            )
            with self._db.session() as s:
                rows = list(s.scalars(stmt))
            blocked: set[tuple[str, str]] = set()
            attempts = 0
            for row in rows:
                key = (row.channel, row.target)
                if key in blocked:
                    continue
                if row.next_attempt_at > now:
                    blocked.add(key)
                    continue
                wait = self._window_wait(row.channel, now.timestamp())
                if wait > 0:
                    self._reschedule(row.id, now + timedelta(seconds=wait))
                    blocked.add(key)
                    continue
                attempts += 1
                if not self._attempt(row, now):
                    blocked.add(key)
            return attempts

    def _reschedule(self, row_id: int, at: datetime) -> None:
        with self._db.session() as s:
            row = s.get(ChatOutboxRow, row_id)
            if row is not None and row.status == OutboxStatus.PENDING.value:
                row.next_attempt_at = at

    def _attempt(self, row: ChatOutboxRow, now: datetime) -> bool:
        """Send one row and store the outcome; True when it left the queue (sent or failed)."""
        error: str | None = None
        retry_at: datetime | None = None
        try:
            message = message_from_payload(row.kind, row.payload)
            channel = self._channels.channel(row.channel, row.target)
            if row.channel in self._limits:
                self._windows.setdefault(row.channel, deque()).append(now.timestamp())
            channel.send(message)
        except ChannelError as exc:
            error = str(exc)
            if exc.retryable and row.attempts + 1 < self._retry.max_attempts:
                delay = max(self._retry.delay(row.attempts + 1), exc.retry_after or 0.0)
                retry_at = now + timedelta(seconds=delay)
        except (ChatError, ConfigError) as exc:
            error = str(exc)
        except ClawfedError as exc:
            error = f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # a bug in a channel must not stop the sender loop
            _log.exception("outbox row %d: unexpected error from channel %s", row.id, row.channel)
            error = f"{type(exc).__name__}: {exc}"
            if row.attempts + 1 < self._retry.max_attempts:
                retry_at = now + timedelta(seconds=self._retry.delay(row.attempts + 1))
        with self._db.session() as s:
            stored = s.get(ChatOutboxRow, row.id)
            if stored is None or stored.status != OutboxStatus.PENDING.value:
                return True
            stored.attempts += 1
            if error is None:
                stored.status, stored.sent_at, stored.last_error = (
                    OutboxStatus.SENT.value,
                    utc(self._clock(), "outbox clock"),
                    None,
                )
                return True
            stored.last_error = error[:2000]
            if retry_at is not None:
                stored.next_attempt_at = retry_at
                _log.warning(
                    "outbox row %d to %s: attempt %d failed, retrying at %s: %s",
                    row.id, row.channel, stored.attempts, retry_at.isoformat(), error,
                )  # fmt: skip
                return False
            stored.status = OutboxStatus.FAILED.value
            _log.error(
                "outbox row %d to %s failed after %d attempt(s): %s",
                row.id, row.channel, stored.attempts, error,
            )  # fmt: skip
            return True

    def next_due(self) -> datetime | None:
        """When the earliest pending row is due (None when nothing is pending)."""
        stmt = select(func.min(ChatOutboxRow.next_attempt_at)).where(
            ChatOutboxRow.status == OutboxStatus.PENDING.value
        )
        with self._db.session() as s:
            due = s.scalar(stmt)
        return None if due is None else utc(due, "next_attempt_at")

    # ---- the sender loop ------------------------------------------------------------
    def start(self) -> None:
        """Start the sender thread (idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="chat-outbox", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the sender thread after the send in progress (waits at most ``timeout`` s)."""
        self._stop.set()
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                raise ChatError(f"outbox sender did not stop within {timeout:g} s")

    @property
    def running(self) -> bool:
        """Whether the sender thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def wait_idle(self, timeout: float) -> bool:
        """Wait (real time) until no row is pending; True if that happened within ``timeout`` s."""
        end = time.monotonic() + timeout
        while self.counts()[OutboxStatus.PENDING]:
            if time.monotonic() >= end:
                return False
            self._stop.wait(0.02)
        return True

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self.run_once()
                due = self.next_due()
            except ClawfedError as exc:
                _log.error("outbox sender: %s", exc)
                due = None
            wait = self._poll if due is None else (due - self._clock()).total_seconds()
            self._wake.wait(min(max(wait, 0.0), self._poll))
