"""The persistent chat outbox against the fake WeCom: restarts, backoff, rate windows, failures."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from clawfed.chat.channel import OutgoingMessage
from clawfed.chat.channels.wecom_robot import WeComRobotChannel
from clawfed.chat.fake_wecom import FakeWeCom, FakeWeComServer, serve_fake_wecom
from clawfed.chat.outbox import (
    Outbox,
    OutboxStatus,
    RateWindow,
    RetryPolicy,
    StaticChannels,
    message_from_payload,
    message_to_payload,
)
from clawfed.chat.ratelimit import RateLimiter
from clawfed.chat.wecom_api import WeComRobot
from clawfed.core.errors import ConfigError
from clawfed.governance import Database, sqlite_url

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


class Clock:
    """A settable clock giving both aware datetimes (outbox) and unix seconds (fake WeCom)."""

    def __init__(self) -> None:
        self.at = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.at

    def time(self) -> float:
        return self.at.timestamp()

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


@pytest.fixture()
def clock() -> Clock:
    return Clock()


@pytest.fixture()
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "chat.db"


@pytest.fixture()
def db(db_path: Path) -> Iterator[Database]:
    database = Database(sqlite_url(db_path))
    database.upgrade()
    yield database
    database.close()


@pytest.fixture()
def server(clock: Clock) -> Iterator[FakeWeComServer]:
    fake = FakeWeCom(robot_keys=("k1", "k2"), clock=clock.time)
    with serve_fake_wecom(fake=fake) as running:
        yield running


def no_sleep(seconds: float) -> None:
    raise AssertionError(f"the outbox must queue, not let the robot sleep {seconds} s")


def robot(server: FakeWeComServer, key: str = "k1") -> WeComRobotChannel:
    """A robot channel whose own limiter runs on the fake WeCom's clock and never sleeps."""
    limiter = RateLimiter(20, 60.0, clock=server.fake.clock)
    return WeComRobotChannel(
        WeComRobot(server.robot_url(key), limiter=limiter, sleep=no_sleep, max_rate_limit_retries=0)
    )


def sent_texts(server: FakeWeComServer) -> list[str]:
    return [str(b["text"]["content"]) for b in server.fake.accepted("/cgi-bin/webhook/send")]


def test_pending_rows_survive_a_restart_and_go_out_in_order(
    db_path: Path, server: FakeWeComServer
) -> None:
    first_db = Database(sqlite_url(db_path))
    first_db.upgrade()
    first = Outbox(first_db, StaticChannels({"group": robot(server)}))
    ids = [first.enqueue("group", OutgoingMessage.text_message(f"msg {i}")) for i in range(3)]
    assert [len(i) for i in ids] == [1, 1, 1]
    first_db.close()  # the first process stops before sending anything
    assert sent_texts(server) == []

    second_db = Database(sqlite_url(db_path))
    second = Outbox(second_db, StaticChannels({"group": robot(server)}), poll_interval=0.05)
    assert second.counts()[OutboxStatus.PENDING] == 3
    second.start()
    try:
        assert second.wait_idle(10.0)
    finally:
        second.stop()
        second_db.close()
    assert sent_texts(server) == ["msg 0", "msg 1", "msg 2"]
    items = second.items()
    assert [i.status for i in items] == [OutboxStatus.SENT] * 3
    assert all(i.sent_at is not None and i.attempts == 1 for i in items)


def test_robot_limit_queues_instead_of_dropping(
    db: Database, server: FakeWeComServer, clock: Clock
) -> None:
    outbox = Outbox(
        db,
        StaticChannels({"group": robot(server)}),
        limits={"group": RateWindow(20, 60.0)},
        clock=clock.now,
    )
    for i in range(25):
        outbox.enqueue("group", OutgoingMessage.text_message(f"n{i}"))
    assert outbox.run_once() == 20
    assert len(sent_texts(server)) == 20
    waiting = outbox.items(OutboxStatus.PENDING)
    assert len(waiting) == 5
    assert waiting[0].next_attempt_at == clock.at + timedelta(seconds=60)
    assert outbox.run_once() == 0  # nothing due yet: no 21st message inside the minute
    clock.advance(60)
    assert outbox.run_once() == 5
    assert sent_texts(server) == [f"n{i}" for i in range(25)]
    assert all(e.errcode == 0 for e in server.fake.transcript("/cgi-bin/webhook/send"))


def test_rate_window_is_rebuilt_from_the_store_after_a_restart(
    db: Database, server: FakeWeComServer, clock: Clock
) -> None:
    limits = {"group": RateWindow(20, 60.0)}
    channels = StaticChannels({"group": robot(server)})
    first = Outbox(db, channels, limits=limits, clock=clock.now)
    for i in range(20):
        first.enqueue("group", OutgoingMessage.text_message(f"a{i}"))
    assert first.run_once() == 20
    clock.advance(30)
    second = Outbox(db, channels, limits=limits, clock=clock.now)
    second.enqueue("group", OutgoingMessage.text_message("late"))
    assert second.run_once() == 0
    assert second.items(OutboxStatus.PENDING)[0].next_attempt_at == clock.at + timedelta(seconds=30)
    clock.advance(30)
    assert second.run_once() == 1
    assert sent_texts(server)[-1] == "late"
    assert all(e.errcode == 0 for e in server.fake.transcript("/cgi-bin/webhook/send"))


def test_service_rate_limit_is_retried_after_its_backoff(db: Database, clock: Clock) -> None:
    fake = FakeWeCom(robot_keys=("k1",), robot_limit=2, clock=clock.time)
    with serve_fake_wecom(fake=fake) as server:
        outbox = Outbox(db, StaticChannels({"group": robot(server)}), clock=clock.now)
        for i in range(3):
            outbox.enqueue("group", OutgoingMessage.text_message(f"r{i}"))
        assert outbox.run_once() == 3
        [held] = outbox.items(OutboxStatus.PENDING)
        assert held.attempts == 1 and "45009" in (held.last_error or "")
        assert held.next_attempt_at == clock.at + timedelta(seconds=60)  # WeCom's retry_after
        clock.advance(61)
        assert outbox.run_once() == 1
        assert sent_texts(server) == ["r0", "r1", "r2"]


def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    sock.close()
    return port


def test_unreachable_service_backs_off_exponentially_then_fails(db: Database, clock: Clock) -> None:
    url = f"http://127.0.0.1:{closed_port()}/cgi-bin/webhook/send?key=k1"
    channel = WeComRobotChannel(WeComRobot(url, max_rate_limit_retries=0))
    retry = RetryPolicy(base_s=2.0, max_backoff_s=10.0, max_attempts=5)
    outbox = Outbox(db, StaticChannels({"group": channel}), retry=retry, clock=clock.now)
    outbox.enqueue("group", OutgoingMessage.text_message("hello"))
    delays = []
    for _ in range(4):
        before = clock.at
        assert outbox.run_once() == 1
        [item] = outbox.items(OutboxStatus.PENDING)
        delays.append((item.next_attempt_at - before).total_seconds())
        assert outbox.run_once() == 0  # not due before its backoff
        clock.at = item.next_attempt_at
    assert delays == [2.0, 4.0, 8.0, 10.0]
    assert outbox.run_once() == 1
    [failed] = outbox.items(OutboxStatus.FAILED)
    assert failed.attempts == 5
    assert "request failed" in (failed.last_error or "")


def test_permanent_error_is_marked_failed_with_the_error(
    db: Database, server: FakeWeComServer
) -> None:
    bad = WeComRobotChannel(WeComRobot(f"{server.api_base}/webhook/send?key=deleted"))
    outbox = Outbox(db, StaticChannels({"bad": bad, "good": robot(server)}))
    outbox.enqueue("bad", OutgoingMessage.text_message("to nowhere"))
    outbox.enqueue("good", OutgoingMessage.text_message("fine"))
    outbox.enqueue("missing", OutgoingMessage.text_message("no such channel"))
    assert outbox.run_once() == 3
    by_channel = {i.channel: i for i in outbox.items()}
    assert by_channel["bad"].status is OutboxStatus.FAILED
    assert "93000" in (by_channel["bad"].last_error or "")
    assert by_channel["bad"].attempts == 1
    assert by_channel["good"].status is OutboxStatus.SENT
    assert by_channel["missing"].status is OutboxStatus.FAILED
    assert "no chat channel named 'missing'" in (by_channel["missing"].last_error or "")
    assert outbox.counts() == {
        OutboxStatus.PENDING: 0,
        OutboxStatus.SENT: 1,
        OutboxStatus.FAILED: 2,
    }


def test_a_waiting_message_holds_back_later_ones_of_the_same_channel(
    db: Database, clock: Clock
) -> None:
    fake = FakeWeCom(robot_keys=("k1", "k2"), robot_limit=1, clock=clock.time)
    with serve_fake_wecom(fake=fake) as server:
        outbox = Outbox(
            db,
            StaticChannels({"one": robot(server, "k1"), "two": robot(server, "k2")}),
            clock=clock.now,
        )
        for text in ("one-a", "one-b", "one-c"):
            outbox.enqueue("one", OutgoingMessage.text_message(text))
        outbox.enqueue("two", OutgoingMessage.text_message("two-a"))
        outbox.run_once()  # one-a sent, one-b rate-limited by the service, one-c must wait
        assert sent_texts(server) == ["one-a", "two-a"]
        clock.advance(61)
        outbox.run_once()  # one-b goes; one-c is limited by the service again
        clock.advance(61)
        outbox.run_once()
        assert sent_texts(server) == ["one-a", "two-a", "one-b", "one-c"]


def test_long_text_is_split_into_rows_that_fit(db: Database, server: FakeWeComServer) -> None:
    text = "\n".join(f"第{i}行：信贷部模型准确率提升" for i in range(200))
    assert len(text.encode()) > 2 * 2048
    outbox = Outbox(db, StaticChannels({"group": robot(server)}))
    ids = outbox.enqueue("group", OutgoingMessage.text_message(text, mentions=("@all",)))
    assert len(ids) >= 3
    outbox.run_once()
    bodies = server.fake.accepted("/cgi-bin/webhook/send")
    assert "".join(b["text"]["content"] for b in bodies) == text
    assert all(len(b["text"]["content"].encode()) <= 2048 for b in bodies)
    assert bodies[0]["text"]["mentioned_list"] == ["@all"]
    assert all("mentioned_list" not in b["text"] for b in bodies[1:])


def test_image_message_round_trips_through_the_store(db: Database, server: FakeWeComServer) -> None:
    message = OutgoingMessage.image_message(PNG, caption="图表")
    assert message_from_payload("image", message_to_payload(message)) == message
    outbox = Outbox(db, StaticChannels({"group": robot(server)}))
    outbox.enqueue("group", message)
    assert outbox.items()[0].message == message
    outbox.run_once()
    bodies = server.fake.accepted("/cgi-bin/webhook/send")
    assert [b["msgtype"] for b in bodies] == ["image", "text"]


@pytest.mark.parametrize(
    ("channel", "target", "match"),
    [("", "", "channel must be"), ("x" * 65, "", "channel must be"), ("ok", " u ", "target")],
)
def test_enqueue_refuses_bad_names(db: Database, channel: str, target: str, match: str) -> None:
    outbox = Outbox(db, StaticChannels({}))
    with pytest.raises(ConfigError, match=match):
        outbox.enqueue(channel, OutgoingMessage.text_message("x"), target)
    assert outbox.items() == []


def test_static_channels_refuse_targets(server: FakeWeComServer) -> None:
    channels = StaticChannels({"group": robot(server)})
    with pytest.raises(ConfigError, match="fixed destination"):
        channels.channel("group", "zhangsan")


def test_retry_policy_validation() -> None:
    with pytest.raises(ConfigError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ConfigError, match="base_s"):
        RetryPolicy(base_s=5, max_backoff_s=1)
    with pytest.raises(ConfigError, match="max_events"):
        RateWindow(0, 60)


def test_purge_keeps_pending_and_recent_rows(
    db: Database, server: FakeWeComServer, clock: Clock
) -> None:
    bad = WeComRobotChannel(WeComRobot(f"{server.api_base}/webhook/send?key=deleted"))
    outbox = Outbox(db, StaticChannels({"group": robot(server), "bad": bad}), clock=clock.now)
    outbox.enqueue("group", OutgoingMessage.text_message("old"))
    outbox.enqueue("bad", OutgoingMessage.text_message("old failure"))
    outbox.run_once()
    clock.advance(3600)
    outbox.enqueue("group", OutgoingMessage.text_message("recent"))
    outbox.run_once()
    outbox.enqueue("missing-later", OutgoingMessage.text_message("still pending"))
    assert outbox.purge(clock.at - timedelta(minutes=30)) == 2
    left = outbox.items()
    assert [i.message.text for i in left] == ["recent", "still pending"]
    assert left[1].status is OutboxStatus.PENDING
