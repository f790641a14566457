"""handle_callback, URL checks and passive replies: alone, and end to end with the fake WeCom."""

from __future__ import annotations

import os
import string
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response
from wechatpy.enterprise.crypto import WeChatCrypto as OracleCrypto

from clawfed.chat.callback import (
    IncomingMessage,
    handle_callback,
    handle_url_verification,
    parse_incoming,
    passive_text_reply,
)
from clawfed.chat.errors import (
    CallbackError,
    InvalidSignatureError,
    MalformedCallbackError,
    MalformedXmlError,
    MessageInvalidError,
    ReplayedMessageError,
    StaleTimestampError,
)
from clawfed.chat.fake_wecom import FakeWeCom
from clawfed.chat.local_server import RunningServer, serve_app
from clawfed.chat.wecom_crypto import ReplayGuard, WeComCrypto

TOKEN = "cbToken"
CORP = "wwcallbackcorp"


def random_key() -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(alphabet[b % len(alphabet)] for b in os.urandom(43))


def text_xml(content: str, msg_id: int = 4561255354251345929, created: int | None = None) -> str:
    created = int(time.time()) if created is None else created
    return (
        f"<xml><ToUserName><![CDATA[{CORP}]]></ToUserName>"
        f"<FromUserName><![CDATA[zhangsan]]></FromUserName><CreateTime>{created}</CreateTime>"
        f"<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[{content}]]></Content>"
        f"<MsgId>{msg_id}</MsgId><AgentID>1000002</AgentID></xml>"
    )


@dataclass
class Pushed:
    params: dict[str, str]
    body: str


def oracle_push(oracle: OracleCrypto, plain: str, timestamp: int | None = None) -> Pushed:
    """Encrypt a callback with wechatpy (independent of our crypto) as WeCom would send it."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    reply = oracle.encrypt_message(plain, "1372623149", stamp)
    fields = {child.tag: child.text or "" for child in ET.fromstring(reply)}
    body = (
        f"<xml><ToUserName><![CDATA[{CORP}]]></ToUserName><AgentID><![CDATA[1000002]]></AgentID>"
        f"<Encrypt><![CDATA[{fields['Encrypt']}]]></Encrypt></xml>"
    )
    params = {"msg_signature": fields["MsgSignature"], "timestamp": stamp, "nonce": "1372623149"}
    return Pushed(params, body)


@pytest.fixture()
def key() -> str:
    return random_key()


@pytest.fixture()
def crypto(key: str) -> WeComCrypto:
    return WeComCrypto(TOKEN, key, CORP)


@pytest.fixture()
def oracle(key: str) -> OracleCrypto:
    return OracleCrypto(TOKEN, key, CORP)


# -- handle_callback, pure -------------------------------------------------------------------


def test_text_message_from_wechatpy_is_parsed(crypto: WeComCrypto, oracle: OracleCrypto) -> None:
    pushed = oracle_push(oracle, text_xml("/status 任务-42 & <b>", created=1700000000))
    message = handle_callback(crypto, ReplayGuard(), pushed.params, pushed.body)
    assert message == IncomingMessage(
        from_user="zhangsan",
        msg_type="text",
        content="/status 任务-42 & <b>",
        msg_id="4561255354251345929",
        agent_id=1000002,
        create_time=1700000000,
    )
    assert message.is_text


def test_retry_with_same_msgid_is_refused(crypto: WeComCrypto, oracle: OracleCrypto) -> None:
    guard = ReplayGuard()
    first = oracle_push(oracle, text_xml("hello"))
    handle_callback(crypto, guard, first.params, first.body)
    retry = oracle_push(oracle, text_xml("hello"))  # WeCom's retry: new nonce/ciphertext, same id
    with pytest.raises(ReplayedMessageError, match="4561255354251345929"):
        handle_callback(crypto, guard, retry.params, retry.body.encode())
    other = oracle_push(oracle, text_xml("hello", msg_id=1))
    assert handle_callback(crypto, guard, other.params, other.body).msg_id == "1"


def test_stale_timestamp_refused(crypto: WeComCrypto, oracle: OracleCrypto) -> None:
    pushed = oracle_push(oracle, text_xml("late"), timestamp=int(time.time()) - 3600)
    with pytest.raises(StaleTimestampError):
        handle_callback(crypto, ReplayGuard(window=300), pushed.params, pushed.body)


def test_forged_signature_refused(crypto: WeComCrypto, oracle: OracleCrypto) -> None:
    pushed = oracle_push(oracle, text_xml("x"))
    params = {**pushed.params, "msg_signature": "0" * 40}
    with pytest.raises(InvalidSignatureError):
        handle_callback(crypto, ReplayGuard(), params, pushed.body)


@pytest.mark.parametrize("missing", ["msg_signature", "timestamp", "nonce"])
def test_missing_query_parameter_refused(
    crypto: WeComCrypto, oracle: OracleCrypto, missing: str
) -> None:
    pushed = oracle_push(oracle, text_xml("x"))
    params = {k: v for k, v in pushed.params.items() if k != missing}
    with pytest.raises(MalformedCallbackError, match=missing):
        handle_callback(crypto, ReplayGuard(), params, pushed.body)


def test_event_gets_a_dedup_key() -> None:
    plain = (
        "<xml><ToUserName><![CDATA[c]]></ToUserName><FromUserName><![CDATA[lisi]]></FromUserName>"
        "<CreateTime>1700000000</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        "<Event><![CDATA[enter_agent]]></Event><EventKey><![CDATA[]]></EventKey>"
        "<AgentID>1000002</AgentID></xml>"
    )
    message = parse_incoming(plain)
    assert message.msg_type == "event" and message.event == "enter_agent"
    assert message.msg_id == "event:lisi:1700000000:enter_agent"
    assert message.content == "" and not message.is_text


@pytest.mark.parametrize(
    ("plain", "error"),
    [
        ("<xml><MsgType>text</MsgType></xml>", MalformedXmlError),  # no FromUserName
        (
            "<xml><FromUserName>a</FromUserName><MsgType>text</MsgType>"
            "<CreateTime>soon</CreateTime><MsgId>1</MsgId></xml>",
            MalformedCallbackError,
        ),
        (
            "<xml><FromUserName>a</FromUserName><MsgType>text</MsgType>"
            "<CreateTime>1</CreateTime><MsgId>12ab</MsgId></xml>",
            MalformedCallbackError,
        ),
    ],
)
def test_malformed_inner_message_refused(plain: str, error: type[CallbackError]) -> None:
    with pytest.raises(error):
        parse_incoming(plain)


def test_url_verification_with_wechatpy_echostr(crypto: WeComCrypto, oracle: OracleCrypto) -> None:
    pushed = oracle_push(oracle, "1616140317555161061")
    fields = {child.tag: child.text or "" for child in ET.fromstring(pushed.body)}
    params = {**pushed.params, "echostr": fields["Encrypt"]}
    assert handle_url_verification(crypto, ReplayGuard(), params) == "1616140317555161061"
    with pytest.raises(MalformedCallbackError, match="echostr"):
        handle_url_verification(crypto, ReplayGuard(), pushed.params)


def test_passive_reply_decrypts_with_wechatpy(crypto: WeComCrypto, oracle: OracleCrypto) -> None:
    envelope = passive_text_reply(crypto, "zhangsan", "收到：任务 42 运行中", "777", 1700000000)
    fields = {child.tag: child.text or "" for child in ET.fromstring(envelope)}
    plain = oracle.decrypt_message(envelope, fields["MsgSignature"], "1700000000", "777")
    reply = {child.tag: child.text for child in ET.fromstring(plain)}
    assert reply == {
        "ToUserName": "zhangsan",
        "FromUserName": CORP,
        "CreateTime": "1700000000",
        "MsgType": "text",
        "Content": "收到：任务 42 运行中",
    }
    with pytest.raises(MessageInvalidError, match="2048"):
        passive_text_reply(crypto, "zhangsan", "长" * 683, "1")


# -- end to end over HTTP with the fake WeCom -------------------------------------------------


@dataclass
class Endpoint:
    """A minimal callback endpoint built on handle_callback (the real one comes later)."""

    crypto: WeComCrypto
    guard: ReplayGuard = field(default_factory=ReplayGuard)
    fail_next: int = 0
    received: list[IncomingMessage] = field(default_factory=list)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/wecom/callback")
        async def check(request: Request) -> Response:
            try:
                echo = handle_url_verification(self.crypto, self.guard, request.query_params)
            except CallbackError as exc:
                return PlainTextResponse(str(exc), status_code=403)
            return PlainTextResponse(echo)

        @app.post("/wecom/callback")
        async def push(request: Request) -> Response:
            if self.fail_next:
                self.fail_next -= 1
                return Response(status_code=503)
            params = dict(request.query_params)
            try:
                message = handle_callback(self.crypto, self.guard, params, await request.body())
            except ReplayedMessageError:
                return Response(status_code=200)  # already handled: empty body, no retry
            except CallbackError as exc:
                return PlainTextResponse(str(exc), status_code=403)
            self.received.append(message)
            reply = passive_text_reply(
                self.crypto, message.from_user, f"收到：{message.content}", params["nonce"]
            )
            return Response(reply, media_type="application/xml")

        return app


@pytest.fixture()
def fake() -> FakeWeCom:
    return FakeWeCom(corp_id=CORP, callback_token=TOKEN, encoding_aes_key=random_key())


@pytest.fixture()
def endpoint(fake: FakeWeCom) -> Endpoint:
    return Endpoint(WeComCrypto(fake.callback_token, fake.encoding_aes_key, fake.corp_id))


@pytest.fixture()
def running(endpoint: Endpoint) -> Iterator[RunningServer]:
    with serve_app(endpoint.app()) as server:
        yield server


def test_fake_url_check_passes(fake: FakeWeCom, running: RunningServer) -> None:
    for _ in range(5):  # echostr is base64 with + / =: the query must survive encoding
        result = fake.verify_callback_url(f"{running.url}/wecom/callback")
        assert result.ok, result


def test_url_check_fails_with_another_token(running: RunningServer, fake: FakeWeCom) -> None:
    impostor = FakeWeCom(
        corp_id=CORP, callback_token="other", encoding_aes_key=fake.encoding_aes_key
    )
    result = impostor.verify_callback_url(f"{running.url}/wecom/callback")
    assert not result.ok and result.status_code == 403 and "msg_signature" in result.answered


def test_user_message_round_trip(
    fake: FakeWeCom, endpoint: Endpoint, running: RunningServer
) -> None:
    delivery = fake.post_user_message(f"{running.url}/wecom/callback", "lisi", "/status job-42")
    assert delivery.delivered and delivery.attempts == 1
    assert delivery.reply_fields["Content"] == "收到：/status job-42"
    assert delivery.reply_fields["ToUserName"] == "lisi"
    [message] = endpoint.received
    assert (message.from_user, message.content, message.agent_id) == (
        "lisi",
        "/status job-42",
        1000002,
    )
    assert message.msg_id == str(delivery.msg_id)
    entry = fake.transcript("callback")[0]
    assert entry.body is not None and entry.body["reply"] == delivery.reply_xml


def test_fake_retries_with_same_msgid_and_endpoint_dedups(
    fake: FakeWeCom, endpoint: Endpoint, running: RunningServer
) -> None:
    url = f"{running.url}/wecom/callback"
    endpoint.fail_next = 2
    delivery = fake.post_user_message(url, "wangwu", "重试", msg_id=99)
    assert delivery.delivered and delivery.attempts == 3
    again = fake.post_user_message(url, "wangwu", "重试", msg_id=99)  # a late duplicate
    assert again.delivered and again.reply_xml is None  # empty 200: no second reply
    assert [m.msg_id for m in endpoint.received] == ["99"]


def test_fake_gives_up_after_three_attempts(
    fake: FakeWeCom, endpoint: Endpoint, running: RunningServer
) -> None:
    endpoint.fail_next = 5
    delivery = fake.post_user_message(f"{running.url}/wecom/callback", "lisi", "x")
    assert not delivery.delivered and delivery.attempts == 3 and delivery.status_code == 503
    assert endpoint.received == []


def test_fake_callbacks_decrypt_with_wechatpy(fake: FakeWeCom) -> None:
    """The fake's encryption, checked by the independent implementation."""
    oracle = OracleCrypto(fake.callback_token, fake.encoding_aes_key, fake.corp_id)
    seen: list[str] = []
    app = FastAPI()

    @app.post("/cb")
    async def push(request: Request) -> Response:
        q = request.query_params
        seen.append(
            oracle.decrypt_message(
                (await request.body()).decode(), q["msg_signature"], q["timestamp"], q["nonce"]
            )
        )
        return Response(status_code=200)

    with serve_app(app) as server:
        delivery = fake.post_user_message(f"{server.url}/cb", "zhangsan", "你好 <world> & ]]>")
    assert delivery.delivered
    root = ET.fromstring(seen[0])
    assert root.findtext("Content") == "你好 <world> & ]]>"
    assert root.findtext("FromUserName") == "zhangsan"
    assert root.findtext("MsgId") == str(delivery.msg_id)
