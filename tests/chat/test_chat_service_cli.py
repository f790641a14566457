"""``clawfed chat send-test`` and ``clawfed chat fake-wecom``."""

from __future__ import annotations

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


def test_fake_wecom_runs_until_interrupted() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "clawfed", "chat", "fake-wecom", "--port", "0"],
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
    try:
        seen: list[str] = []
        while not any(line.startswith("corp_id:") for line in seen):
            seen.append(lines.get(timeout=60))
        api_base = next(x for x in seen if x.startswith("api_base:")).split()[1]
        corp_line = next(x for x in seen if x.startswith("corp_id:")).split()
        assert api_base.startswith("http://127.0.0.1:")
        reply = httpx.get(
            f"{api_base}/gettoken", params={"corpid": corp_line[1], "corpsecret": corp_line[3]}
        ).json()
        assert reply["errcode"] == 0 and reply["access_token"]
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


def test_fake_wecom_refuses_a_public_address() -> None:
    result = CliRunner().invoke(app, ["chat", "fake-wecom", "--host", "0.0.0.0"])
    assert result.exit_code != 0
    assert "loopback only" in str(result.exception)
