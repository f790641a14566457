"""WeComClient and WeComRobot against the fake WeCom served over HTTP on 127.0.0.1."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterator

import pytest

from clawfed.chat.errors import (
    ChannelTransportError,
    FailureKind,
    MessageInvalidError,
    WeComApiError,
)
from clawfed.chat.fake_wecom import FakeWeCom, FakeWeComServer, serve_fake_wecom
from clawfed.chat.ratelimit import RateLimiter
from clawfed.chat.wecom_api import WeComClient, WeComRobot
from clawfed.chat.wecom_messages import NewsArticle, Recipients

PNG = b"\x89PNG\r\n\x1a\n" + b"\r\n\x00\xff" * 64 + os.urandom(200)  # CRLFs test byte-exactness
TO = Recipients(users=("zhangsan",))


class FakeClock:
    """Seconds that only move when a test (or an injected sleep) moves them."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture()
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture()
def server(clock: FakeClock) -> Iterator[FakeWeComServer]:
    running = serve_fake_wecom(fake=FakeWeCom(clock=clock))
    yield running
    running.stop()


@pytest.fixture()
def client(server: FakeWeComServer, clock: FakeClock) -> Iterator[WeComClient]:
    fake = server.fake
    with WeComClient(
        server.api_base, fake.corp_id, fake.corp_secret, fake.agent_id, clock=clock
    ) as c:
        yield c


def codes(fake: FakeWeCom, path: str) -> list[int]:
    return [e.errcode for e in fake.transcript(path)]


# -- access token ----------------------------------------------------------------------------


def test_token_is_cached_between_sends(client: WeComClient, server: FakeWeComServer) -> None:
    client.send_text("first", TO)
    client.send_text("second", TO)
    assert server.fake.count("/cgi-bin/gettoken") == 1
    sent = server.fake.accepted("/cgi-bin/message/send")
    assert [b["text"]["content"] for b in sent] == ["first", "second"]
    assert all(b["agentid"] == 1000002 and b["touser"] == "zhangsan" for b in sent)


def test_token_refetched_when_its_lifetime_runs_out(
    client: WeComClient, server: FakeWeComServer, clock: FakeClock
) -> None:
    client.send_text("a", TO)
    clock.now += 7200 - 300 - 1  # still inside expires_in minus the margin
    client.send_text("b", TO)
    assert server.fake.count("/cgi-bin/gettoken") == 1
    clock.now += 2
    client.send_text("c", TO)
    assert server.fake.count("/cgi-bin/gettoken") == 2
    assert codes(server.fake, "/cgi-bin/message/send") == [0, 0, 0]


def test_expired_token_refreshed_once_on_42001(
    client: WeComClient, server: FakeWeComServer
) -> None:
    client.send_text("before", TO)
    server.fake.expire_tokens()
    client.send_text("after expiry", TO)
    assert server.fake.count("/cgi-bin/gettoken") == 2
    assert codes(server.fake, "/cgi-bin/message/send") == [0, 42001, 0]
    assert [b["text"]["content"] for b in server.fake.accepted("/cgi-bin/message/send")] == [
        "before",
        "after expiry",
    ]


def test_invalid_token_refreshed_once_on_40014(
    client: WeComClient, server: FakeWeComServer
) -> None:
    client.send_text("before", TO)
    server.fake.invalidate_tokens()
    client.send_text("after", TO)
    assert codes(server.fake, "/cgi-bin/message/send") == [0, 40014, 0]


def test_refresh_is_retried_only_once(clock: FakeClock) -> None:
    fake = FakeWeCom(clock=clock, token_ttl=0)  # every token is born expired
    with (
        serve_fake_wecom(fake=fake) as running,
        WeComClient(running.api_base, fake.corp_id, fake.corp_secret, fake.agent_id) as client,
    ):
        with pytest.raises(WeComApiError) as info:
            client.send_text("never", TO)
    assert info.value.errcode == 42001
    assert fake.count("/cgi-bin/gettoken") == 2
    assert codes(fake, "/cgi-bin/message/send") == [42001, 42001]


@pytest.mark.parametrize(
    ("corp_id", "secret", "errcode"),
    [("wwfakecorp0000001", "wrong", 40001), ("wwnope", "x", 40013)],
)
def test_wrong_credentials_are_config_errors(
    server: FakeWeComServer, corp_id: str, secret: str, errcode: int
) -> None:
    with WeComClient(server.api_base, corp_id, secret, 1000002) as client:
        with pytest.raises(WeComApiError) as info:
            client.send_text("x", TO)
    error = info.value
    assert error.errcode == errcode and error.kind is FailureKind.CONFIG
    assert not error.retryable
    assert "/" in error.hint  # bilingual hint
    assert server.fake.count("/cgi-bin/gettoken") == 1  # not retried
    assert server.fake.count("/cgi-bin/message/send") == 0


def test_unreachable_server_is_a_transient_transport_error(server: FakeWeComServer) -> None:
    url = server.api_base
    server.stop()
    with WeComClient(url, "wwfakecorp0000001", "fake-app-secret", 1000002) as client:
        with pytest.raises(ChannelTransportError) as info:
            client.send_text("x", TO)
    assert info.value.retryable
    assert "fake-app-secret" not in str(info.value)


# -- message/send ----------------------------------------------------------------------------


def test_invalid_recipients_reported_not_raised(
    client: WeComClient, server: FakeWeComServer
) -> None:
    result = client.send_text("hi", Recipients(users=("zhangsan", "ghost"), parties=(1, 99)))
    assert result.invalid_users == ("ghost",)
    assert result.invalid_parties == ("99",)
    assert not result.fully_delivered and len(result.msg_ids) == 1
    body = server.fake.accepted("/cgi-bin/message/send")[0]
    assert body["touser"] == "zhangsan|ghost" and body["toparty"] == "1|99"


def test_all_recipients_invalid_is_81013(client: WeComClient) -> None:
    with pytest.raises(WeComApiError) as info:
        client.send_text("hi", Recipients(users=("ghost",)))
    assert info.value.errcode == 81013 and info.value.kind is FailureKind.INVALID_REQUEST


def test_long_text_split_on_utf8_and_line_breaks(
    client: WeComClient, server: FakeWeComServer
) -> None:
    lines = [f"第{i}行：联邦学习轮次完成，准确率 0.{i:03d}" for i in range(200)]
    text = "\n".join(lines)
    assert len(text.encode()) > 3 * 2048
    result = client.send_text(text, TO)
    parts = [b["text"]["content"] for b in server.fake.accepted("/cgi-bin/message/send")]
    assert len(parts) == len(result.msg_ids) >= 4
    assert "".join(parts) == text
    assert all(len(p.encode()) <= 2048 for p in parts)
    assert all(p.endswith("\n") for p in parts[:-1])  # cut after whole lines


def test_markdown_uses_the_app_limit_of_2048_bytes(
    client: WeComClient, server: FakeWeComServer
) -> None:
    text = "## 报告\n" + "**准确率** 0.93\n" * 200
    client.send_markdown(text, TO)
    parts = [b["markdown"]["content"] for b in server.fake.accepted("/cgi-bin/message/send")]
    assert len(parts) >= 2 and "".join(parts) == text
    assert all(len(p.encode()) <= 2048 for p in parts)


def test_upload_image_then_send_it(client: WeComClient, server: FakeWeComServer) -> None:
    media_id = client.upload_image(PNG, "chart.png")
    assert server.fake.media(media_id) == PNG  # multipart carried the bytes exactly
    upload = server.fake.transcript("/cgi-bin/media/upload")[0]
    assert upload.params["type"] == "image" and upload.body == {
        "filename": "chart.png",
        "size": len(PNG),
        "type": "image",
    }
    client.send_image(media_id, TO)
    assert server.fake.accepted("/cgi-bin/message/send")[0]["image"] == {"media_id": media_id}


def test_unknown_media_id_is_40007(client: WeComClient) -> None:
    with pytest.raises(WeComApiError) as info:
        client.send_image("no-such-media", TO)
    assert info.value.errcode == 40007


def test_upload_refuses_non_images_before_sending(
    client: WeComClient, server: FakeWeComServer
) -> None:
    with pytest.raises(MessageInvalidError, match="JPG or PNG"):
        client.upload_image(b"GIF89a" + b"\x00" * 40, "x.gif")
    assert server.fake.count("/cgi-bin/media/upload") == 0


def test_news_articles(client: WeComClient, server: FakeWeComServer) -> None:
    article = NewsArticle("第 3 轮完成", "https://example.com/r/3", description="acc 0.93")
    client.send_news([article], TO)
    body = server.fake.accepted("/cgi-bin/message/send")[0]
    assert body["news"]["articles"] == [
        {"title": "第 3 轮完成", "description": "acc 0.93", "url": "https://example.com/r/3"}
    ]
    with pytest.raises(MessageInvalidError, match="1..8"):
        client.send_news([article] * 9, TO)


# -- group robot -----------------------------------------------------------------------------


@pytest.fixture()
def robot(server: FakeWeComServer, clock: FakeClock) -> Iterator[WeComRobot]:
    with WeComRobot(
        server.robot_url(), limiter=RateLimiter(20, 60.0, clock=clock), sleep=clock.sleep
    ) as r:
        yield r


def test_robot_text_with_mentions(robot: WeComRobot, server: FakeWeComServer) -> None:
    robot.send_text("训练完成", mentioned_list=["zhangsan", "@all"], mentioned_mobile_list=["138"])
    body = server.fake.accepted("/cgi-bin/webhook/send")[0]
    assert body == {
        "msgtype": "text",
        "text": {
            "content": "训练完成",
            "mentioned_list": ["zhangsan", "@all"],
            "mentioned_mobile_list": ["138"],
        },
    }


def test_robot_markdown_split_at_4096_bytes(robot: WeComRobot, server: FakeWeComServer) -> None:
    text = "\n".join(f'> 节点 {i} <font color="info">正常</font>' for i in range(300))
    assert robot.send_markdown(text) >= 3
    parts = [b["markdown"]["content"] for b in server.fake.accepted("/cgi-bin/webhook/send")]
    assert "".join(parts) == text and all(len(p.encode()) <= 4096 for p in parts)
    assert max(len(p.encode()) for p in parts) > 2048  # the robot limit, not the app one


def test_robot_image_base64_and_md5(robot: WeComRobot, server: FakeWeComServer) -> None:
    robot.send_image(PNG)
    image = server.fake.accepted("/cgi-bin/webhook/send")[0]["image"]
    assert base64.b64decode(image["base64"]) == PNG
    assert image["md5"] == hashlib.md5(PNG).hexdigest()
    with pytest.raises(MessageInvalidError, match="2097152"):
        robot.send_image(PNG[:8] + b"\x00" * (2 * 1024 * 1024))


def test_robot_news(robot: WeComRobot, server: FakeWeComServer) -> None:
    robot.send_news([NewsArticle("t", "https://example.com", picurl="https://example.com/p.png")])
    articles = server.fake.accepted("/cgi-bin/webhook/send")[0]["news"]["articles"]
    assert articles[0]["picurl"] == "https://example.com/p.png"


def test_robot_bad_key_is_93000(server: FakeWeComServer, clock: FakeClock) -> None:
    with WeComRobot(server.robot_url("deleted-key"), sleep=clock.sleep) as robot:
        with pytest.raises(WeComApiError) as info:
            robot.send_text("x")
    assert info.value.errcode == 93000 and info.value.kind is FailureKind.CONFIG
    assert "deleted-key" not in str(info.value) and "deleted-key" not in repr(robot)


def test_robot_queues_past_20_per_minute_and_drops_nothing(
    robot: WeComRobot, server: FakeWeComServer, clock: FakeClock
) -> None:
    start = clock.now
    for i in range(45):
        robot.send_text(f"msg {i}")
    assert codes(server.fake, "/cgi-bin/webhook/send") == [0] * 45  # never hit 45009
    contents = [b["text"]["content"] for b in server.fake.accepted("/cgi-bin/webhook/send")]
    assert contents == [f"msg {i}" for i in range(45)]
    assert clock.now - start == pytest.approx(120.0)  # two full windows waited, no more
    assert len(clock.sleeps) == 2


def test_robot_backs_off_and_retries_after_45009(
    robot: WeComRobot, server: FakeWeComServer, clock: FakeClock
) -> None:
    other = WeComRobot(server.robot_url(), limiter=RateLimiter(20, 60.0, clock=clock))
    for _ in range(20):  # someone else used up this robot's minute
        other.send_text("other sender")
    other.close()
    robot.send_text("must not be dropped")
    assert codes(server.fake, "/cgi-bin/webhook/send")[-2:] == [45009, 0]
    assert server.fake.accepted("/cgi-bin/webhook/send")[-1]["text"]["content"] == (
        "must not be dropped"
    )
    assert clock.sleeps == [60.0]


def test_robot_gives_up_after_bounded_retries(server: FakeWeComServer, clock: FakeClock) -> None:
    fake = server.fake
    robot = WeComRobot(
        server.robot_url(),
        limiter=RateLimiter(1000, 60.0, clock=clock),  # a limiter that is far too generous
        sleep=lambda _s: None,  # and time that does not move: the fake keeps saying 45009
        max_rate_limit_retries=2,
    )
    with robot:
        for _ in range(20):
            robot.send_text("fill")
        with pytest.raises(WeComApiError) as info:
            robot.send_text("too many")
    assert info.value.errcode == 45009 and info.value.retryable
    assert info.value.retry_after == 60.0
    assert codes(fake, "/cgi-bin/webhook/send")[-3:] == [45009] * 3
