"""The WeCom callback app over real HTTP, driven by the fake WeCom's encrypted messages."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from test_chat_service_support import chat_config, seeded

from clawfed.chat.fake_wecom import FakeWeCom, FakeWeComServer, serve_fake_wecom
from clawfed.chat.local_server import RunningServer, serve_app
from clawfed.chat.outbox import Outbox, OutboxStatus
from clawfed.chat.service import (
    Answer,
    Answerer,
    ChatConfig,
    ChatService,
    ChatStore,
    ConfiguredChannels,
    TextAnswer,
    chat_runtime,
    create_chat_app,
)
from clawfed.governance import Database
from clawfed.governance.audit import AuditLog

USERS = ("zhangsan", "lisi")


@pytest.fixture()
def wecom() -> Iterator[FakeWeComServer]:
    with serve_fake_wecom(fake=FakeWeCom(users=USERS)) as running:
        yield running


@pytest.fixture()
def db(tmp_path: Path) -> Iterator[Database]:
    database = seeded(tmp_path)
    yield database
    database.close()


@dataclass
class Running:
    outbox: Outbox
    app: FastAPI
    server: RunningServer

    @property
    def callback(self) -> str:
        return f"{self.server.url}/wecom/callback"

    def settle(self) -> None:
        """Wait for the answers still being worked on, then for the outbox to send them."""
        assert chat_runtime(self.app).wait_idle(60)
        assert self.outbox.wait_idle(20)


def start(
    wecom: FakeWeComServer, db: Database, answerer: Answerer | None = None, budget: float = 3.5
) -> Running:
    config = chat_config(wecom)
    outbox = Outbox(db, ConfiguredChannels(config), poll_interval=0.05)
    app = create_chat_app(config, ChatStore(db), outbox, answerer=answerer, passive_budget_s=budget)
    outbox.start()
    return Running(outbox, app, serve_app(app))


def stop(running: Running) -> None:
    running.server.stop()
    chat_runtime(running.app).close()
    running.outbox.stop()


@pytest.fixture()
def chat(wecom: FakeWeComServer, db: Database) -> Iterator[Running]:
    running = start(wecom, db)
    yield running
    stop(running)


def test_url_verification(wecom: FakeWeComServer, chat: Running) -> None:
    assert wecom.fake.verify_callback_url(chat.callback).ok


def test_status_command_gets_a_passive_encrypted_reply(
    wecom: FakeWeComServer, chat: Running
) -> None:
    delivery = wecom.fake.post_user_message(chat.callback, "zhangsan", "/状态")
    assert delivery.delivered and delivery.attempts == 1
    fields = delivery.reply_fields
    assert fields["ToUserName"] == "zhangsan"
    assert fields["MsgType"] == "text"
    assert "节点（2/3 在线）" in fields["Content"]
    assert "fraud 运行中 3/5轮" in fields["Content"]
    assert wecom.fake.count("/cgi-bin/message/send") == 0  # nothing sent the slow way


def test_free_question_gets_a_passive_reply(wecom: FakeWeComServer, chat: Running) -> None:
    delivery = wecom.fake.post_user_message(chat.callback, "lisi", "信贷部模型准确率多少？")
    assert "信贷部 88.0%" in delivery.reply_fields["Content"]
    english = wecom.fake.post_user_message(chat.callback, "lisi", "How is training going?")
    assert "Job 'fraud' running" in english.reply_fields["Content"]


def test_chart_question_is_acknowledged_then_sent_as_an_image(
    wecom: FakeWeComServer, chat: Running
) -> None:
    delivery = wecom.fake.post_user_message(chat.callback, "zhangsan", "对比信贷部和合规部的准确率")
    assert delivery.reply_fields["Content"] == "收到，正在计算…"
    chat.settle()
    uploads = [e for e in wecom.fake.transcript("/cgi-bin/media/upload") if e.errcode == 0]
    assert len(uploads) == 1 and uploads[0].body is not None
    assert uploads[0].body["type"] == "image" and uploads[0].body["size"] > 5000
    sent = wecom.fake.accepted("/cgi-bin/message/send")
    assert [b["msgtype"] for b in sent] == ["image", "text"]
    assert all(b["touser"] == "zhangsan" for b in sent)
    media = wecom.fake.media(sent[0]["image"]["media_id"])
    assert media.startswith(b"\x89PNG")
    assert "fraud@v3 各部门准确率对比" in sent[1]["text"]["content"]
    assert chat.outbox.counts()[OutboxStatus.SENT] == 1


def test_a_wecom_retry_of_the_same_message_gets_an_empty_200(
    wecom: FakeWeComServer, chat: Running
) -> None:
    first = wecom.fake.post_user_message(chat.callback, "zhangsan", "/任务", msg_id=42)
    assert "fraud" in first.reply_fields["Content"]
    again = wecom.fake.post_user_message(chat.callback, "zhangsan", "/任务", msg_id=42)
    assert again.status_code == 200 and again.body == "" and again.reply_xml is None


def test_forged_and_stale_callbacks_are_refused_with_400(
    wecom: FakeWeComServer, chat: Running, caplog: pytest.LogCaptureFixture
) -> None:
    stamp = str(int(time.time()))
    body = wecom.fake.crypto.encrypt_callback("<xml><MsgType>text</MsgType></xml>", "c", 1)
    with caplog.at_level(logging.WARNING, logger="clawfed.chat.service.app"):
        forged = httpx.post(
            chat.callback,
            params={"msg_signature": "0" * 40, "timestamp": stamp, "nonce": "1"},
            content=body,
        )
    assert (forged.status_code, forged.text) == (400, "invalid signature")
    assert any("refused (invalid signature)" in r.getMessage() for r in caplog.records)
    garbled = httpx.post(chat.callback, params={"timestamp": stamp}, content="<xml>")
    assert garbled.status_code == 400
    old = FakeWeCom(
        users=USERS,
        corp_id=wecom.fake.corp_id,
        callback_token=wecom.fake.callback_token,
        encoding_aes_key=wecom.fake.encoding_aes_key,
        clock=lambda: time.time() - 3600,
    )
    stale = old.post_user_message(chat.callback, "zhangsan", "/状态")
    assert stale.status_code == 400 and stale.body == "stale timestamp"
    assert stale.attempts == 3  # WeCom keeps retrying a refused callback


class LongAnswerer(Answerer):
    def answer(self, text: str) -> Answer:
        return TextAnswer(f"{text}：" + "信贷部模型准确率提升。" * 300)


class SlowAnswerer(Answerer):
    def __init__(self, store: ChatStore, config: ChatConfig, release: threading.Event) -> None:
        super().__init__(store, config.zone)
        self.release = release

    def answer(self, text: str) -> Answer:
        self.release.wait(10)
        return super().answer(text)


def test_long_answers_go_out_through_the_outbox(wecom: FakeWeComServer, db: Database) -> None:
    running = start(wecom, db, LongAnswerer(ChatStore(db), chat_config(wecom).zone))
    try:
        delivery = wecom.fake.post_user_message(running.callback, "lisi", "/状态")
        assert delivery.status_code == 200 and delivery.reply_xml is None
        running.settle()
    finally:
        stop(running)
    parts = [b["text"]["content"] for b in wecom.fake.accepted("/cgi-bin/message/send")]
    assert len(parts) >= 3 and all(len(p.encode()) <= 2048 for p in parts)
    assert "".join(parts).startswith("/状态：信贷部")


def test_slow_answers_miss_the_window_and_come_later(wecom: FakeWeComServer, db: Database) -> None:
    release = threading.Event()
    config = chat_config(wecom)
    running = start(wecom, db, SlowAnswerer(ChatStore(db), config, release), budget=0.2)
    try:
        delivery = wecom.fake.post_user_message(running.callback, "lisi", "/任务")
        assert delivery.status_code == 200 and delivery.reply_xml is None
        assert wecom.fake.count("/cgi-bin/message/send") == 0
        release.set()
        running.settle()
    finally:
        stop(running)
    [late] = wecom.fake.accepted("/cgi-bin/message/send")
    assert late["touser"] == "lisi" and "fraud 运行中" in late["text"]["content"]


def test_chat_service_wires_everything(wecom: FakeWeComServer, db: Database) -> None:
    config = chat_config(wecom, http_port=0)
    service = ChatService(config, db)
    url = service.start()
    assert url is not None and url.startswith("http://127.0.0.1:")
    try:
        reply = wecom.fake.post_user_message(f"{url}/wecom/callback", "zhangsan", "/审计")
        assert "审计链校验：完好" in reply.reply_fields["Content"]
        service.handle("node_lost", {"node_id": "n-credit", "department": "信贷部"})
        assert service.outbox.wait_idle(20)
    finally:
        service.stop()
    robot = wecom.fake.accepted("/cgi-bin/webhook/send")
    assert len(robot) == 1 and "信贷部节点已失联" in robot[0]["markdown"]["content"]
    service.handle("node_lost", {"node_id": "n-comp", "department": "合规部"})
    assert service.outbox.counts()[OutboxStatus.PENDING] == 0  # stopped: nothing new queued
    assert AuditLog(db).verify().ok
