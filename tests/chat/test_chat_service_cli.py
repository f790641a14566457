"""``clawfed chat send-test`` and ``clawfed chat fake-wecom``."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from clawfed.chat.fake_wecom import FakeWeCom, FakeWeComServer, serve_fake_wecom
from clawfed.cli.main import app
from clawfed.core import ConfigError


@pytest.fixture()
def wecom() -> Iterator[FakeWeComServer]:
    with serve_fake_wecom(fake=FakeWeCom(users=("zhangsan", "lisi"))) as running:
        yield running


def write_config(path: Path, server: FakeWeComServer, robot_key: str = "fake-robot-key") -> Path:
    fake = server.fake
    chat: dict[str, Any] = {
        "channels": {
            "group": {"type": "wecom_robot", "webhook_url": server.robot_url(robot_key)},
            "app": {
                "type": "wecom_app",
                "api_base": server.api_base,
                "corp_id": fake.corp_id,
                "corp_secret": fake.corp_secret,
                "agent_id": fake.agent_id,
                "token": fake.callback_token,
                "encoding_aes_key": fake.encoding_aes_key,
            },
        }
    }
    path.write_text(yaml.safe_dump({"federation": "t", "chat": chat}), encoding="utf-8")
    return path


def test_send_test_reaches_every_channel(wecom: FakeWeComServer, tmp_path: Path) -> None:
    config = write_config(tmp_path / "clawfed.yaml", wecom)
    result = CliRunner().invoke(
        app, ["chat", "send-test", "--config", str(config), "--to", "lisi", "--text", "你好"]
    )
    assert result.exit_code == 0, result.output
    assert "group: sent" in result.output and "app: sent" in result.output
    [robot] = wecom.fake.accepted("/cgi-bin/webhook/send")
    assert robot["text"]["content"] == "你好"
    [direct] = wecom.fake.accepted("/cgi-bin/message/send")
    assert direct["touser"] == "lisi" and direct["text"]["content"] == "你好"


def test_send_test_reports_failures(wecom: FakeWeComServer, tmp_path: Path) -> None:
    config = write_config(tmp_path / "clawfed.yaml", wecom, robot_key="removed-robot")
    runner = CliRunner()
    result = runner.invoke(app, ["chat", "send-test", "-c", str(config), "--channel", "group"])
    assert result.exit_code == 1
    assert "group: failed" in result.output and "93000" in result.output
    no_target = runner.invoke(app, ["chat", "send-test", "-c", str(config), "--channel", "app"])
    assert no_target.exit_code == 1 and "recipients" in no_target.output
    unknown = runner.invoke(app, ["chat", "send-test", "-c", str(config), "--channel", "nope"])
    assert unknown.exit_code != 0
    assert wecom.fake.accepted("/cgi-bin/webhook/send") == []


def _run_fake_wecom(*args: str) -> tuple[list[str], list[str]]:
    """Start ``clawfed chat fake-wecom ARGS``, get a token, ask ``user/get`` for each user the
    fake prints, then Ctrl-C it; returns (printed lines, user/get replies as JSON text)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "clawfed", "chat", "fake-wecom", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    answers: list[str] = []
    try:
        seen: list[str] = []
        while not any(line.startswith("users:") for line in seen):
            seen.append(lines.get(timeout=60))
        api_base = next(x for x in seen if x.startswith("api_base:")).split()[1]
        corp_line = next(x for x in seen if x.startswith("corp_id:")).split()
        assert api_base.startswith("http://127.0.0.1:")
        reply = httpx.get(
            f"{api_base}/gettoken", params={"corpid": corp_line[1], "corpsecret": corp_line[3]}
        ).json()
        assert reply["errcode"] == 0 and reply["access_token"]
        token = reply["access_token"]
        for userid in next(x for x in seen if x.startswith("users:")).split()[1:]:
            asked = {"access_token": token, "userid": userid}
            answers.append(httpx.get(f"{api_base}/user/get", params=asked).text)
        listed = httpx.get(f"{api_base}/department/list", params={"access_token": token})
        answers.append(listed.text)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    reader.join(timeout=10)
    rest = []
    while not lines.empty():
        rest.append(lines.get())
    assert any("fake WeCom stopped" in line for line in rest)
    return seen, answers


def test_fake_wecom_runs_until_interrupted() -> None:
    seen, answers = _run_fake_wecom()
    assert "users: lisi wangwu zhangsan\n" in seen
    assert [json.loads(a)["errcode"] for a in answers] == [0, 0, 0, 0]


DIRECTORY = """\
departments:
  10: 信贷部
  20: 合规部
users:
  liuyang: {name: 刘洋, department: [10], is_leader_in_dept: [1]}
  zhaomin: {name: 赵敏, department: [10, 20], position: 分析师}
"""


def test_fake_wecom_serves_a_directory_file(tmp_path: Path) -> None:
    people = tmp_path / "people.yaml"
    people.write_text(DIRECTORY, encoding="utf-8")
    seen, answers = _run_fake_wecom("--directory", str(people), "--user", "ops")
    assert "users: liuyang ops zhaomin\n" in seen
    liuyang, ops, zhaomin, departments = (json.loads(a) for a in answers)
    assert (liuyang["name"], liuyang["department"], liuyang["is_leader_in_dept"]) == (
        "刘洋", [10], [1]
    )  # fmt: skip
    assert (zhaomin["department"], zhaomin["is_leader_in_dept"]) == ([10, 20], [0, 0])
    assert zhaomin["position"] == "分析师"
    assert (ops["errcode"], ops["department"]) == (0, [])  # a --user without a profile
    assert [(d["id"], d["name"]) for d in departments["department"]] == [
        (10, "信贷部"), (20, "合规部")
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, "cannot read the directory file"),
        ("departments: [", "is not valid YAML"),
        ("- a\n- b\n", "expected a mapping with departments: and users:"),
        ("departments: {10: 信贷部}\nusers: {a: {name: A, department: [30]}}\n",
         "user 'a' is in department(s) [30], which departments: does not list"),
        ("departments: {10: 信贷部}\nusers: {a: {name: A, department: [10], "
         "is_leader_in_dept: [1, 0]}}\n", "is_leader_in_dept has 2 flag(s) for 1 department"),
        ("departments: {10: 信贷部}\nusers: {'bad id!': {name: A}}\n", "users.bad id!"),
        ("departments: {0: 总部}\nusers: {}\n", "departments.0"),
        ("departments: {10: 信贷部}\nusers: {}\n", "lists no users"),
        ("departments: {10: 信贷部}\nusers: {a: {name: A, role: boss}}\n", "users.a.role"),
    ],
)  # fmt: skip
def test_fake_wecom_refuses_a_bad_directory_file(
    tmp_path: Path, text: str | None, expected: str
) -> None:
    people = tmp_path / "people.yaml"
    if text is not None:
        people.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(app, ["chat", "fake-wecom", "--directory", str(people)])
    assert result.exit_code != 0
    assert isinstance(result.exception, ConfigError)
    assert expected in str(result.exception) and str(people) in str(result.exception)


def test_fake_wecom_refuses_a_public_address() -> None:
    result = CliRunner().invoke(app, ["chat", "fake-wecom", "--host", "0.0.0.0"])
    assert result.exit_code != 0
    assert "loopback only" in str(result.exception)
