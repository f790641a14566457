"""The fake WeCom itself: errcodes and shapes per endpoint, limits, transcript, clean lifecycle."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Iterator

import httpx
import pytest

from clawfed.chat.fake_wecom import FakeWeCom, FakeWeComServer, serve_fake_wecom
from clawfed.chat.fake_wecom_rules import parse_multipart

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture()
def fake(clock: FakeClock) -> FakeWeCom:
    return FakeWeCom(clock=clock, member_limit=3)


def token(fake: FakeWeCom) -> str:
    reply = fake.gettoken({"corpid": fake.corp_id, "corpsecret": fake.corp_secret})
    assert reply["errcode"] == 0
    return str(reply["access_token"])


def send(fake: FakeWeCom, tok: str, body: dict[str, object] | bytes) -> dict[str, object]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return fake.message_send({"access_token": tok}, raw)


def text(content: str, to: str = "zhangsan", agentid: int = 1000002) -> dict[str, object]:
    return {"touser": to, "agentid": agentid, "msgtype": "text", "text": {"content": content}}


# -- gettoken --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "errcode"),
    [
        ({}, 41002),
        ({"corpid": "wwother", "corpsecret": "x"}, 40013),
        ({"corpid": "wwfakecorp0000001"}, 41004),
        ({"corpid": "wwfakecorp0000001", "corpsecret": "wrong"}, 40001),
    ],
)
def test_gettoken_errors(fake: FakeWeCom, params: dict[str, str], errcode: int) -> None:
    reply = fake.gettoken(params)
    assert reply["errcode"] == errcode and "access_token" not in reply
    assert f"more info at https://open.work.weixin.qq.com/devtool/query?e={errcode}" in str(
        reply["errmsg"]
    )


def test_gettoken_success_shape(fake: FakeWeCom) -> None:
    reply = fake.gettoken({"corpid": fake.corp_id, "corpsecret": fake.corp_secret})
    assert set(reply) == {"errcode", "errmsg", "access_token", "expires_in"}
    assert reply["expires_in"] == 7200 and reply["errmsg"] == "ok"


# -- message/send ----------------------------------------------------------------------------


def test_token_lifecycle(fake: FakeWeCom, clock: FakeClock) -> None:
    assert send(fake, "", text("x"))["errcode"] == 41001
    assert send(fake, "forged", text("x"))["errcode"] == 40014
    tok = token(fake)
    assert send(fake, tok, text("x"))["errcode"] == 0
    clock.now += 7200
    assert send(fake, tok, text("x"))["errcode"] == 42001
    tok2 = token(fake)
    fake.invalidate_tokens()
    assert send(fake, tok2, text("x"))["errcode"] == 40014


@pytest.mark.parametrize(
    ("body", "errcode"),
    [
        (b"{not json", 47001),
        (text("x", agentid=5), 40056),
        ({"touser": "zhangsan", "agentid": 1000002, "msgtype": "voice"}, 40008),
        (text(""), 44004),
        (text("长" * 683), 45002),  # 2049 bytes
        (
            {"touser": "zhangsan", "agentid": 1000002, "msgtype": "markdown",
             "markdown": {"content": "x" * 2049}},
            45002,
        ),
        (text("x", to="ghost|nobody"), 81013),
    ],
)  # fmt: skip
def test_message_send_refusals(
    fake: FakeWeCom, body: dict[str, object] | bytes, errcode: int
) -> None:
    assert send(fake, token(fake), body)["errcode"] == errcode


def test_message_send_success_shape(fake: FakeWeCom) -> None:
    body = {**text("hi", to="zhangsan|ghost"), "toparty": "1|77", "totag": "1"}
    reply = send(fake, token(fake), body)
    assert reply["errcode"] == 0
    assert (reply["invaliduser"], reply["invalidparty"], reply["invalidtag"]) == ("ghost", "77", "")
    assert isinstance(reply["msgid"], str) and reply["msgid"]


def test_member_flood_is_dropped_silently(fake: FakeWeCom, clock: FakeClock) -> None:
    tok = token(fake)
    replies = [send(fake, tok, text(f"m{i}"))["errcode"] for i in range(4)]
    assert replies == [0, 0, 0, 0]  # WeCom reports success...
    entries = fake.transcript("/cgi-bin/message/send")
    assert [e.dropped_users for e in entries] == [(), (), (), ("zhangsan",)]  # ...but drops it
    clock.now += 61
    send(fake, tok, text("later"))
    assert fake.transcript("/cgi-bin/message/send")[-1].dropped_users == ()


# -- media/upload ----------------------------------------------------------------------------


def upload(fake: FakeWeCom, tok: str, data: bytes, media_type: str = "image") -> dict[str, object]:
    request = httpx.Request("POST", "http://x/", files={"media": ("a.png", data, "image/png")})
    request.read()
    return fake.media_upload(
        {"access_token": tok, "type": media_type}, request.headers["content-type"], request.content
    )


def test_media_upload_rules(fake: FakeWeCom, clock: FakeClock) -> None:
    tok = token(fake)
    assert upload(fake, tok, PNG, media_type="gif")["errcode"] == 40004
    assert upload(fake, tok, b"\x89PNG")["errcode"] == 40006
    assert upload(fake, tok, b"GIF89a" + b"\x00" * 50)["errcode"] == 40005
    assert upload(fake, "bad", PNG)["errcode"] == 40014
    reply = upload(fake, tok, PNG)
    assert reply["errcode"] == 0 and reply["type"] == "image"
    assert reply["created_at"] == "1700000000"
    media_id = str(reply["media_id"])
    assert fake.media(media_id) == PNG
    image = {"touser": "zhangsan", "agentid": 1000002, "msgtype": "image"}
    assert send(fake, tok, {**image, "image": {"media_id": media_id}})["errcode"] == 0
    clock.now += 3 * 24 * 3600 + 1
    tok = token(fake)
    assert send(fake, tok, {**image, "image": {"media_id": media_id}})["errcode"] == 40007


def test_upload_without_media_part_is_44001(fake: FakeWeCom) -> None:
    request = httpx.Request("POST", "http://x/", files={"file": ("a.png", PNG, "image/png")})
    request.read()
    reply = fake.media_upload(
        {"access_token": token(fake), "type": "image"},
        request.headers["content-type"],
        request.content,
    )
    assert reply["errcode"] == 44001


def test_multipart_parser_is_byte_exact() -> None:
    data = b"\r\n--\r\n\x00\xff" * 10
    request = httpx.Request(
        "POST", "http://x/", files={"media": ("名字.bin", data, "application/octet-stream")}
    )
    request.read()
    [part] = parse_multipart(request.headers["content-type"], request.content)
    assert (part.name, part.data, part.content_type) == ("media", data, "application/octet-stream")
    assert parse_multipart("application/json", b"{}") == []


# -- webhook/send ----------------------------------------------------------------------------


def robot(fake: FakeWeCom, body: dict[str, object], key: str = "fake-robot-key") -> int:
    reply = fake.webhook_send({"key": key}, json.dumps(body).encode())
    return int(str(reply["errcode"]))


def test_robot_refusals(fake: FakeWeCom) -> None:
    assert robot(fake, {"msgtype": "text", "text": {"content": "x"}}, key="bad") == 93000
    assert robot(fake, {"msgtype": "text", "text": {"content": "长" * 683}}) == 40058
    assert robot(fake, {"msgtype": "markdown", "markdown": {"content": "x" * 4097}}) == 40058
    assert robot(fake, {"msgtype": "markdown", "markdown": {"content": "x" * 4096}}) == 0
    image = {"base64": base64.b64encode(PNG).decode(), "md5": "0" * 32}
    assert robot(fake, {"msgtype": "image", "image": image}) == 40058
    image["md5"] = hashlib.md5(PNG).hexdigest()
    assert robot(fake, {"msgtype": "image", "image": image}) == 0
    article = {"title": "t", "url": "https://example.com"}
    assert robot(fake, {"msgtype": "news", "news": {"articles": [article] * 9}}) == 40058
    assert robot(fake, {"msgtype": "file", "file": {"media_id": "x"}}) == 40008
    assert (
        robot(fake, {"msgtype": "text", "text": {"content": "x", "mentioned_list": "a"}}) == 40058
    )


def test_robot_limit_is_20_per_sliding_minute(fake: FakeWeCom, clock: FakeClock) -> None:
    msg = {"msgtype": "text", "text": {"content": "x"}}
    assert [robot(fake, msg) for _ in range(21)] == [0] * 20 + [45009]
    clock.now += 59
    assert robot(fake, msg) == 45009
    clock.now += 1
    assert robot(fake, msg) == 0
    assert fake.count("/cgi-bin/webhook/send") == 23
    assert len(fake.accepted("/cgi-bin/webhook/send")) == 21


# -- over HTTP, and the server's lifecycle ---------------------------------------------------


@pytest.fixture()
def server() -> Iterator[FakeWeComServer]:
    with serve_fake_wecom() as running:
        yield running


def test_endpoints_answer_json_over_http(server: FakeWeComServer) -> None:
    with httpx.Client(base_url=server.api_base) as http:
        got = http.get("/gettoken", params={"corpid": "wwfakecorp0000001", "corpsecret": "bad"})
        assert got.status_code == 200 and got.json()["errcode"] == 40001
        sent = http.post("/message/send", params={"access_token": "x"}, content=b"{}")
        assert sent.json()["errcode"] == 40014
        hook = http.post("/webhook/send", params={"key": "nope"}, json={"msgtype": "text"})
        assert hook.json()["errcode"] == 93000
        up = http.post("/media/upload", params={"access_token": "x", "type": "image"})
        assert up.json()["errcode"] == 40014
    paths = [(e.method, e.path) for e in server.fake.transcript()]
    assert paths == [
        ("GET", "/cgi-bin/gettoken"),
        ("POST", "/cgi-bin/message/send"),
        ("POST", "/cgi-bin/webhook/send"),
        ("POST", "/cgi-bin/media/upload"),
    ]
    assert [e.seq for e in server.fake.transcript()] == [0, 1, 2, 3]


def test_server_binds_loopback_and_stops_cleanly() -> None:
    before = threading.active_count()
    running = serve_fake_wecom()
    assert running.url.startswith("http://127.0.0.1:") and running.port > 0
    assert running.running
    with httpx.Client() as http:  # keep-alive connection open while stopping
        assert http.get(f"{running.api_base}/gettoken").status_code == 200
        running.stop()
        assert not running.running
        with pytest.raises(httpx.TransportError):
            http.get(f"{running.api_base}/gettoken")
    running.stop()  # idempotent
    assert threading.active_count() == before


def test_two_servers_get_distinct_ports() -> None:
    with serve_fake_wecom() as a, serve_fake_wecom() as b:
        assert a.port != b.port
        assert a.robot_url().endswith("/cgi-bin/webhook/send?key=fake-robot-key")
