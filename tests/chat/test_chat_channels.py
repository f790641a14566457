"""Channels: DingTalk / Feishu signatures and Slack against local receivers, WeCom via the fake."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from clawfed.chat.channel import Channel, MessageKind, OutgoingMessage
from clawfed.chat.channels.dingtalk import DingTalkChannel, dingtalk_sign
from clawfed.chat.channels.feishu import FeishuChannel, feishu_sign
from clawfed.chat.channels.slack import SlackChannel, to_mrkdwn
from clawfed.chat.channels.wecom_app import WeComAppChannel
from clawfed.chat.channels.wecom_robot import WeComRobotChannel
from clawfed.chat.errors import (
    DingTalkError,
    FailureKind,
    FeishuError,
    MessageInvalidError,
    SlackError,
    UnsupportedMessageError,
)
from clawfed.chat.fake_wecom import FakeWeComServer, serve_fake_wecom
from clawfed.chat.local_server import RunningServer, serve_app
from clawfed.chat.ratelimit import RateLimiter
from clawfed.chat.wecom_api import WeComClient, WeComRobot
from clawfed.chat.wecom_messages import Recipients
from clawfed.core.errors import ConfigError

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
DING_SECRET = "SECfixedsecret123"
DING_TOKEN = "dingtoken"
FEISHU_SECRET = "feishusecret"


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


# -- signatures against values computed by hand (openssl dgst -sha256 -hmac ... | base64) -----


def test_dingtalk_signature_matches_hand_computed_value() -> None:
    # printf '1700000000000\nSECfixedsecret123' | openssl dgst -sha256 -hmac SECfixedsecret123
    assert dingtalk_sign(1_700_000_000_000, DING_SECRET) == (
        "ziBezrjHoeJKmrtbk0bhzrwZ6GkRPoGZZuBPFZZdGxA="
    )


def test_feishu_signature_matches_hand_computed_value() -> None:
    # printf '' | openssl dgst -sha256 -hmac "$(printf '1700000000\nfeishusecret')"
    assert feishu_sign(1_700_000_000, FEISHU_SECRET) == (
        "5Wc8F8b2vZlNjoVFpK6BAaovMobglP4Rm1FzmEq/rCU="
    )


# -- local receivers that check requests the way each vendor describes -----------------------


@dataclass
class Receivers:
    """DingTalk, Feishu and Slack webhooks in one local app, with a controllable clock."""

    clock: FakeClock = field(default_factory=FakeClock)
    dingtalk: list[dict[str, Any]] = field(default_factory=list)
    feishu: list[dict[str, Any]] = field(default_factory=list)
    slack: list[dict[str, Any]] = field(default_factory=list)
    ding_times: list[float] = field(default_factory=list)

    def reset(self) -> None:
        self.clock.now = 1_700_000_000.0
        self.clock.sleeps.clear()
        for log in (self.dingtalk, self.feishu, self.slack, self.ding_times):
            log.clear()

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/robot/send")
        async def dingtalk(request: Request) -> JSONResponse:
            raw = dict(p.split("=", 1) for p in request.url.query.split("&") if "=" in p)
            if raw.get("access_token") != DING_TOKEN:
                return JSONResponse({"errcode": 300001, "errmsg": "token is not exist"})
            stamp, sign = raw.get("timestamp", ""), raw.get("sign", "")
            expected = base64.b64encode(
                hmac.new(
                    DING_SECRET.encode(), f"{stamp}\n{DING_SECRET}".encode(), hashlib.sha256
                ).digest()
            ).decode()
            fresh = stamp.isdigit() and abs(int(stamp) / 1000 - self.clock()) < 3600
            if not fresh or "+" in sign or unquote(sign) != expected:
                return JSONResponse({"errcode": 310000, "errmsg": "sign not match"})
            now = self.clock()
            if sum(1 for t in self.ding_times if t > now - 60) >= 20:
                return JSONResponse({"errcode": 130101, "errmsg": "send too fast"})
            self.ding_times.append(now)
            self.dingtalk.append(await request.json())
            return JSONResponse({"errcode": 0, "errmsg": "ok"})

        @app.post("/open-apis/bot/v2/hook/{token}")
        async def feishu(token: str, request: Request) -> JSONResponse:
            body = await request.json()
            stamp = str(body.get("timestamp", ""))
            key = f"{stamp}\n{FEISHU_SECRET}".encode()
            expected = base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
            fresh = stamp.isdigit() and abs(int(stamp) - self.clock()) < 3600
            if token != "feishutoken" or not fresh or body.get("sign") != expected:
                return JSONResponse(
                    {"code": 19021, "msg": "sign match fail or timestamp is not within one hour"}
                )
            self.feishu.append(body)
            return JSONResponse({"code": 0, "msg": "success", "data": {}})

        @app.post("/services/{team}/{bot}/{secret}")
        async def slack(team: str, request: Request) -> Response:
            if team == "archived":
                return PlainTextResponse("channel_is_archived", status_code=410)
            if team == "busy":
                return PlainTextResponse(
                    "rate_limited", status_code=429, headers={"Retry-After": "7"}
                )
            body = await request.json()
            if not body.get("text"):
                return PlainTextResponse("no_text", status_code=400)
            self.slack.append(body)
            return PlainTextResponse("ok")

        return app


@pytest.fixture(scope="module")
def receivers_server() -> Iterator[tuple[Receivers, RunningServer]]:
    receivers = Receivers()
    with serve_app(receivers.app()) as server:
        yield receivers, server


@pytest.fixture()
def receivers(receivers_server: tuple[Receivers, RunningServer]) -> Receivers:
    receivers_server[0].reset()
    return receivers_server[0]


@pytest.fixture()
def base(receivers_server: tuple[Receivers, RunningServer]) -> str:
    return receivers_server[1].url


def ding(base: str, receivers: Receivers, secret: str = DING_SECRET) -> DingTalkChannel:
    clock = receivers.clock
    return DingTalkChannel(
        f"{base}/robot/send?access_token={DING_TOKEN}",
        secret,
        clock=clock,
        limiter=RateLimiter(20, 60.0, clock=clock),
        sleep=clock.sleep,
    )


# -- DingTalk --------------------------------------------------------------------------------


def test_dingtalk_text_signed_and_mentioned(base: str, receivers: Receivers) -> None:
    channel = ding(base, receivers)
    channel.send(OutgoingMessage.text_message("第 3 轮完成", mentions=("user01", "@all")))
    channel.close()
    assert receivers.dingtalk == [
        {
            "msgtype": "text",
            "text": {"content": "第 3 轮完成\n@user01"},
            "at": {"isAtAll": True, "atUserIds": ["user01"]},
        }
    ]


def test_dingtalk_markdown_has_a_title(base: str, receivers: Receivers) -> None:
    ding(base, receivers).send(OutgoingMessage.markdown_message("## 周报\n- 准确率 **0.93**"))
    body = receivers.dingtalk[0]
    assert body["markdown"] == {"title": "周报", "text": "## 周报\n- 准确率 **0.93**"}


def test_dingtalk_wrong_secret_is_a_config_error(base: str, receivers: Receivers) -> None:
    with pytest.raises(DingTalkError) as info:
        ding(base, receivers, secret="SECwrong").send(OutgoingMessage.text_message("x"))
    assert info.value.errcode == 310000 and info.value.kind is FailureKind.CONFIG
    assert receivers.dingtalk == []


def test_dingtalk_stale_clock_is_refused_by_the_service(base: str) -> None:
    channel = DingTalkChannel(
        f"{base}/robot/send?access_token={DING_TOKEN}", DING_SECRET, clock=lambda: 1_600_000_000
    )
    with pytest.raises(DingTalkError, match="310000"):
        channel.send(OutgoingMessage.text_message("x"))


def test_dingtalk_queues_at_20_per_minute(base: str, receivers: Receivers) -> None:
    channel = ding(base, receivers)
    for i in range(25):
        channel.send(OutgoingMessage.text_message(f"m{i}"))
    assert [b["text"]["content"] for b in receivers.dingtalk] == [f"m{i}" for i in range(25)]
    assert receivers.clock.sleeps == [60.0]


def test_dingtalk_throttle_reply_is_retryable(base: str, receivers: Receivers) -> None:
    unlimited = DingTalkChannel(
        f"{base}/robot/send?access_token={DING_TOKEN}",
        DING_SECRET,
        clock=receivers.clock,
        limiter=RateLimiter(100, 60.0, clock=receivers.clock),
    )
    for _ in range(20):
        unlimited.send(OutgoingMessage.text_message("fill"))
    with pytest.raises(DingTalkError) as info:
        unlimited.send(OutgoingMessage.text_message("one too many"))
    assert info.value.kind is FailureKind.RATE_LIMITED and info.value.retry_after == 600.0
    assert unlimited.limiter.reserve() == pytest.approx(600.0)  # later sends wait it out


def test_dingtalk_refuses_images_and_bad_urls(base: str, receivers: Receivers) -> None:
    with pytest.raises(UnsupportedMessageError, match="DingTalk"):
        ding(base, receivers).send(OutgoingMessage.image_message(PNG))
    with pytest.raises(ConfigError, match="access_token"):
        DingTalkChannel(f"{base}/robot/send")


# -- Feishu ----------------------------------------------------------------------------------


def feishu(base: str, receivers: Receivers, secret: str = FEISHU_SECRET) -> FeishuChannel:
    return FeishuChannel(f"{base}/open-apis/bot/v2/hook/feishutoken", secret, clock=receivers.clock)


def test_feishu_text_signed_in_body(base: str, receivers: Receivers) -> None:
    feishu(base, receivers).send(OutgoingMessage.text_message("模型已发布", mentions=("@all",)))
    assert receivers.feishu == [
        {
            "timestamp": "1700000000",
            "sign": "5Wc8F8b2vZlNjoVFpK6BAaovMobglP4Rm1FzmEq/rCU=",
            "msg_type": "text",
            "content": {"text": '<at user_id="all">所有人</at> 模型已发布'},
        }
    ]


def test_feishu_markdown_as_card(base: str, receivers: Receivers) -> None:
    feishu(base, receivers).send(OutgoingMessage.markdown_message("**准确率** 0.93"))
    body = receivers.feishu[0]
    assert body["msg_type"] == "interactive"
    assert body["card"]["elements"] == [{"tag": "markdown", "content": "**准确率** 0.93"}]


def test_feishu_wrong_secret_is_a_config_error(base: str, receivers: Receivers) -> None:
    with pytest.raises(FeishuError) as info:
        feishu(base, receivers, secret="nope").send(OutgoingMessage.text_message("x"))
    assert info.value.code == 19021 and info.value.kind is FailureKind.CONFIG


def test_feishu_long_text_is_split(base: str, receivers: Receivers) -> None:
    text = "节点状态正常。\n" * 1500  # about 31 000 bytes: over the 20 KB body limit
    feishu(base, receivers).send(OutgoingMessage.text_message(text))
    parts = [b["content"]["text"] for b in receivers.feishu]
    assert len(parts) >= 4 and "".join(parts) == text


# -- Slack -----------------------------------------------------------------------------------


def test_slack_text_and_markdown(base: str, receivers: Receivers) -> None:
    channel = SlackChannel(f"{base}/services/T1/B1/xyz", sleep=lambda _s: None)
    channel.send(OutgoingMessage.text_message("round done", mentions=("U123",)))
    channel.send(OutgoingMessage.markdown_message("# Report\n**acc** [run](https://x.io/r)"))
    assert receivers.slack[0] == {"text": "<@U123> round done"}
    assert receivers.slack[1] == {
        "text": "Report",
        "blocks": [
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": "*Report*\n*acc* <https://x.io/r|run>"},
            }
        ],
    }


def test_mrkdwn_conversion() -> None:
    assert to_mrkdwn("### T\n**b** and [l](http://a.b/c)") == "*T*\n*b* and <http://a.b/c|l>"


@pytest.mark.parametrize(
    ("team", "status", "kind", "retry_after"),
    [
        ("archived", 410, FailureKind.CONFIG, None),
        ("busy", 429, FailureKind.RATE_LIMITED, 7.0),
    ],
)
def test_slack_errors_mapped(
    base: str, team: str, status: int, kind: FailureKind, retry_after: float | None
) -> None:
    channel = SlackChannel(f"{base}/services/{team}/B/x", sleep=lambda _s: None)
    with pytest.raises(SlackError) as info:
        channel.send(OutgoingMessage.text_message("x"))
    assert (info.value.status, info.value.kind, info.value.retry_after) == (
        status,
        kind,
        retry_after,
    )


def test_slack_refuses_images(base: str) -> None:
    with pytest.raises(UnsupportedMessageError, match="Slack"):
        SlackChannel(f"{base}/services/T/B/x").send(OutgoingMessage.image_message(PNG))


# -- WeCom channels through the fake ---------------------------------------------------------


@pytest.fixture()
def wecom() -> Iterator[FakeWeComServer]:
    with serve_fake_wecom() as server:
        yield server


def test_wecom_robot_channel(wecom: FakeWeComServer) -> None:
    clock = FakeClock()
    robot = WeComRobot(wecom.robot_url(), limiter=RateLimiter(clock=clock), sleep=clock.sleep)
    channel = WeComRobotChannel(robot)
    channel.send(OutgoingMessage.text_message("hi", mentions=("zhangsan",)))
    channel.send(OutgoingMessage.markdown_message("# 报告\n完成", mentions=("lisi", "@all")))
    channel.send(OutgoingMessage.image_message(PNG, caption="图 1"))
    robot.close()
    sent = wecom.fake.accepted("/cgi-bin/webhook/send")
    assert [b["msgtype"] for b in sent] == ["text", "text", "markdown", "image", "text"]
    assert sent[0]["text"]["mentioned_list"] == ["zhangsan"]
    assert sent[1]["text"] == {"content": "报告", "mentioned_list": ["@all"]}
    assert sent[2]["markdown"]["content"] == "# 报告\n完成\n<@lisi>"
    assert base64.b64decode(sent[3]["image"]["base64"]) == PNG
    assert sent[4]["text"]["content"] == "图 1"


def test_wecom_app_channel(wecom: FakeWeComServer) -> None:
    fake = wecom.fake
    with WeComClient(wecom.api_base, fake.corp_id, fake.corp_secret, fake.agent_id) as client:
        channel = WeComAppChannel(client, Recipients(users=("zhangsan",)))
        channel.send(OutgoingMessage.text_message("hi", mentions=("lisi", "ghost")))
        assert channel.last_result is not None
        assert channel.last_result.invalid_users == ("ghost",)
        channel.send(OutgoingMessage.image_message(PNG, caption="chart"))
        with pytest.raises(UnsupportedMessageError, match="@all"):
            channel.send(OutgoingMessage.text_message("x", mentions=("@all",)))
    sent = fake.accepted("/cgi-bin/message/send")
    assert sent[0]["touser"] == "zhangsan|lisi|ghost"
    assert [b["msgtype"] for b in sent] == ["text", "image", "text"]
    assert fake.media(sent[1]["image"]["media_id"]) == PNG


def test_every_channel_satisfies_the_protocol(base: str, receivers: Receivers) -> None:
    robot = WeComRobot("http://127.0.0.1:9/cgi-bin/webhook/send?key=k")
    client = WeComClient("http://127.0.0.1:9/cgi-bin", "c", "s", 1)
    channels = [
        WeComRobotChannel(robot),
        WeComAppChannel(client, Recipients(users=("u",))),
        ding(base, receivers),
        feishu(base, receivers),
        SlackChannel(f"{base}/services/T/B/x"),
    ]
    assert all(isinstance(c, Channel) for c in channels)
    robot.close()
    client.close()


# -- the message record ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kind": MessageKind.TEXT, "text": "  "}, "non-empty text"),
        ({"kind": MessageKind.IMAGE}, "image bytes"),
        ({"kind": MessageKind.TEXT, "text": "x", "image": PNG}, "must not carry"),
        ({"kind": MessageKind.TEXT, "text": "x", "mentions": ("",)}, "mentions"),
    ],
)
def test_outgoing_message_validated(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(MessageInvalidError, match=match):
        OutgoingMessage(**kwargs)


def test_headline_skips_heading_marks() -> None:
    assert OutgoingMessage.markdown_message("\n\n### 第 3 轮\nbody").headline == "第 3 轮"
    assert OutgoingMessage.image_message(PNG).headline == ""
