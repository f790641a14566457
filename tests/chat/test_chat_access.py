"""Who may ask what in WeCom: roles from config, store and user/get; every call audited.

Everything goes through real HTTP: the fake WeCom encrypts each message as WeCom does and
the chat app's answers are decrypted from its passive replies.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi import FastAPI
from test_chat_service_support import chat_config, seeded

from clawfed.chat.fake_wecom import FakeWeCom, FakeWeComServer, serve_fake_wecom
from clawfed.chat.local_server import RunningServer, serve_app
from clawfed.chat.outbox import Outbox
from clawfed.chat.service import ChatStore, ConfiguredChannels, chat_runtime, create_chat_app
from clawfed.governance import Database
from clawfed.governance.approvals import ApprovalBook, ApprovalStatus
from clawfed.governance.audit import AuditLog, AuditRecord
from clawfed.governance.policy import Role
from clawfed.governance.users import UserDirectory

ADMIN, HEAD, EMPLOYEE, AUDITOR, LINKED, STRANGER = (
    "wanglei", "liuyang", "zhaomin", "sunli", "qianfeng", "stranger",
)  # fmt: skip
PROFILES = {
    HEAD: {"name": "刘洋", "department": [10], "is_leader_in_dept": [1]},
    EMPLOYEE: {"name": "赵敏", "department": [10], "is_leader_in_dept": [0]},
}
ACCESS = {
    "people": {ADMIN: {"role": "data_admin"}, AUDITOR: {"role": "auditor"}},
    "wecom_departments": {10: "信贷部", 20: "合规部"},
}


@pytest.fixture()
def wecom() -> Iterator[FakeWeComServer]:
    fake = FakeWeCom(users=(ADMIN, HEAD, EMPLOYEE, AUDITOR, LINKED), profiles=PROFILES,
                     departments={10: "信贷部", 20: "合规部"})  # fmt: skip
    with serve_fake_wecom(fake=fake) as running:
        yield running


@pytest.fixture()
def db(tmp_path: Path) -> Iterator[Database]:
    database = seeded(tmp_path)
    yield database
    database.close()


@dataclass
class Chat:
    app: FastAPI
    server: RunningServer
    outbox: Outbox
    wecom: FakeWeComServer

    def say(self, user: str, text: str) -> str:
        delivery = self.wecom.fake.post_user_message(
            f"{self.server.url}/wecom/callback", user, text
        )
        assert delivery.delivered
        return delivery.reply_fields["Content"]


@pytest.fixture()
def chat(wecom: FakeWeComServer, db: Database) -> Iterator[Chat]:
    config = chat_config(wecom, access=ACCESS)
    outbox = Outbox(db, ConfiguredChannels(config), poll_interval=0.05)
    app = create_chat_app(config, ChatStore(db), outbox)
    assert chat_runtime(app).wait_idle(60)  # the question parser is loaded before any question
    outbox.start()
    server = serve_app(app)
    yield Chat(app, server, outbox, wecom)
    server.stop()
    chat_runtime(app).close()
    outbox.stop()


def _records(db: Database, actor: str) -> list[AuditRecord]:
    return [r for r in AuditLog(db).list(limit=1000) if r.actor == actor]


def test_an_employee_gets_no_federation_internals_and_each_refusal_is_audited(
    chat: Chat, db: Database
) -> None:
    for question in ("/状态", "信贷部模型准确率多少？", "/审计", "/训练 fraud"):
        reply = chat.say(EMPLOYEE, question)
        assert reply.startswith("抱歉，你无权进行此操作"), (question, reply)
        assert "信贷部 88.0%" not in reply and "n-credit" not in reply
    records = _records(db, EMPLOYEE)
    assert [r.detail["question"] for r in records] == [
        "/状态", "信贷部模型准确率多少？", "/审计", "/训练 fraud"
    ]  # fmt: skip
    assert {r.outcome for r in records} == {"denied"} and {r.role for r in records} == {"employee"}
    assert [r.action for r in records] == [
        "federation.view",
        "model.view",
        "audit.view",
        "job.submit",
    ]
    assert set(records[1].departments) == {"信贷部"}
    assert records[0].detail["identity"] == "wecom"  # found through WeCom's user/get
    assert chat.wecom.fake.count("/cgi-bin/user/get") == 1  # and then remembered
    assert "/状态" in chat.say(EMPLOYEE, "帮助")  # general questions stay open
    assert _records(db, EMPLOYEE)[-1].outcome == "allowed"


def test_a_department_head_sees_only_the_own_department(chat: Chat, db: Database) -> None:
    status = chat.say(HEAD, "/状态")
    assert "信贷部 n-credit" in status and "合规部" not in status and "审计部" not in status
    own = chat.say(HEAD, "信贷部模型准确率多少？")
    assert "信贷部 88.0%" in own
    mine = chat.say(HEAD, "模型准确率多少？")  # no department named: the own one
    assert "信贷部 88.0%" in mine and "合规部" not in mine
    other = chat.say(HEAD, "合规部模型准确率多少？")
    assert other.startswith("抱歉") and "信贷部" in other and "79.0%" not in other
    ranking = chat.say(HEAD, "各部门贡献排名")
    assert ranking.startswith("抱歉")
    records = _records(db, HEAD)
    assert [r.outcome for r in records] == ["allowed", "allowed", "allowed", "denied", "denied"]
    assert records[3].departments == ("合规部",) or list(records[3].departments) == ["合规部"]
    assert {r.role for r in records} == {Role.DEPARTMENT_HEAD.value}


def test_a_head_sees_model_versions_with_only_the_own_department(chat: Chat) -> None:
    admin = chat.say(ADMIN, "/版本")
    assert "合规部" in admin and "信贷部" in admin
    for asked in ("/版本", "/版本 fraud", "有哪些模型版本"):
        reply = chat.say(HEAD, asked)
        assert reply.startswith("模型版本"), (asked, reply)
        assert "fraud@v" in reply and "参与：信贷部" in reply, (asked, reply)
        assert "合规部" not in reply and "审计部" not in reply, (asked, reply)
        assert "88.0%" in reply  # the department's own accuracy, not the global mean


def test_a_head_approves_only_the_own_department_in_chat(chat: Chat, db: Database) -> None:
    book = ApprovalBook(db, AuditLog(db))
    book.request("fraud", "信贷部", "年度反欺诈模型")
    book.request("fraud", "合规部", "年度反欺诈模型")
    asked = chat.say(HEAD, "/批准 fraud")
    assert "年度反欺诈模型" in asked and "/批准 fraud 年度反欺诈模型" in asked
    done = chat.say(HEAD, "/批准 fraud 年度反欺诈模型")
    assert done.startswith("已批准：信贷部")
    assert book.get("fraud", "信贷部").status is ApprovalStatus.APPROVED
    assert book.get("fraud", "合规部").status is ApprovalStatus.PENDING
    refused = chat.say(ADMIN, "/批准 fraud 年度反欺诈模型")
    assert refused.startswith("抱歉") and "only the department's head" in refused
    assert chat.say(EMPLOYEE, "/批准 fraud 年度反欺诈模型").startswith("抱歉")
    grants = [r for r in AuditLog(db).list(limit=1000) if r.action == "approval.grant"]
    assert {(r.actor, r.outcome) for r in grants} >= {
        (HEAD, "allowed"), (ADMIN, "denied"), (EMPLOYEE, "denied")
    }  # fmt: skip


def test_a_data_admin_sees_everything_and_an_auditor_the_audit_log(
    chat: Chat, db: Database
) -> None:
    status = chat.say(ADMIN, "/状态")
    assert "信贷部" in status and "合规部" in status and "审计部" in status
    assert "合规部 79.0%" in chat.say(ADMIN, "合规部模型准确率多少？")
    assert "审计链校验：完好" in chat.say(AUDITOR, "/审计")
    assert chat.say(AUDITOR, "/状态").startswith("抱歉")
    assert [r.detail["identity"] for r in _records(db, ADMIN)] == ["config", "config"]


def test_unknown_and_store_linked_senders(chat: Chat, db: Database) -> None:
    reply = chat.say(STRANGER, "/状态")  # WeCom's user/get answers 60111 for this id
    assert reply.startswith("抱歉") and "not registered" in reply
    [record] = _records(db, f"wecom:{STRANGER}")
    assert (record.role, record.outcome, record.detail["question"]) == (
        "unknown",
        "denied",
        "/状态",
    )
    users = UserDirectory(db)
    users.create("qian.feng", Role.DEPARTMENT_HEAD, department="合规部")
    users.link_wecom("qian.feng", LINKED)
    status = chat.say(LINKED, "/状态")
    assert "合规部 n-comp" in status and "信贷部" not in status
    assert _records(db, "qian.feng")[-1].detail["identity"] == "store"
