"""``clawfed chat fake-wecom|send-test``: a local WeCom for demos, and a test message."""

from __future__ import annotations

import ipaddress
import os
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer
import yaml

from clawfed.chat.channel import OutgoingMessage
from clawfed.chat.errors import ChatError
from clawfed.chat.fake_wecom import FakeWeCom, FakeWeComServer, serve_fake_wecom
from clawfed.chat.fake_wecom_directory import load_directory
from clawfed.chat.service.channels import ConfiguredChannels
from clawfed.chat.service.config import CHAT_SECTION, WeComAppSettings, read_chat_config
from clawfed.cli.common import console, err_console
from clawfed.cli.federation_cmds import WorkspaceOpt
from clawfed.coordinator.config import CONFIG_NAME
from clawfed.core import ConfigError

app = typer.Typer(help="Chat: a local fake WeCom, and test messages.", no_args_is_help=True)

DEFAULT_TEXT = "clawfed 测试消息 / test message"


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def demo_chat_section(server: FakeWeComServer) -> dict[str, Any]:
    """A ``chat:`` section wiring the coordinator to the fake WeCom ``server`` (demo only)."""
    fake = server.fake
    return {
        "demo": True,
        "channels": {
            "group": {"type": "wecom_robot", "webhook_url": server.robot_url()},
            "app": {
                "type": "wecom_app",
                "api_base": server.api_base,
                "corp_id": fake.corp_id,
                "corp_secret": fake.corp_secret,
                "agent_id": fake.agent_id,
                "token": fake.callback_token,
                "encoding_aes_key": fake.encoding_aes_key,
                "to_users": sorted(fake.users)[:1],
            },
        },
        "routes": [{"events": ["round_completed", "anomaly"], "channel": "group"}],
    }


def _snippet(server: FakeWeComServer) -> str:
    chat = {CHAT_SECTION: demo_chat_section(server)}
    return yaml.safe_dump(chat, allow_unicode=True, sort_keys=False)


@app.command("fake-wecom")
def fake_wecom(
    host: Annotated[str, typer.Option(help="Loopback address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0 = any free port).", min=0, max=65535)] = 0,
    robot_key: Annotated[
        list[str] | None, typer.Option("--robot-key", help="Robot webhook key (repeatable).")
    ] = None,
    user: Annotated[
        list[str] | None, typer.Option("--user", help="Known WeCom user id (repeatable).")
    ] = None,
    directory: Annotated[
        Path | None,
        typer.Option(
            "--directory",
            help="YAML file of departments and users (name, departments, leader flags) that "
            "user/get and department/list answer with.",
        ),
    ] = None,
) -> None:
    """Run a fake WeCom (robots, app API, callbacks) on loopback until Ctrl-C."""
    if not _loopback(host):
        raise ConfigError(f"the fake WeCom listens on loopback only, got --host {host}")
    people = None if directory is None else load_directory(directory)
    users = tuple(user or (() if people else ("zhangsan", "lisi", "wangwu")))
    if people is not None and not users and not people.profiles:
        raise ConfigError(f"{directory} lists no users; add some under users: or pass --user")
    fake = FakeWeCom(
        robot_keys=tuple(robot_key or ("fake-robot-key",)),
        users=users + tuple(people.profiles if people else ()),
        profiles=people.profiles if people else None,
        departments=people.departments if people else None,
    )
    server = serve_fake_wecom(host, port, fake=fake)
    stop = threading.Event()

    def _on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        typer.echo(f"fake WeCom at {server.url}")
        typer.echo(f"api_base: {server.api_base}")
        typer.echo(f"robot webhook_url: {server.robot_url()}")
        typer.echo(f"corp_id: {fake.corp_id}  corp_secret: {fake.corp_secret}")
        typer.echo(f"agent_id: {fake.agent_id}  callback token: {fake.callback_token}")
        typer.echo(f"encoding_aes_key: {fake.encoding_aes_key}")
        typer.echo(f"users: {' '.join(sorted(fake.users))}")
        typer.echo("chat section for clawfed.yaml (demo only):\n" + _snippet(server))
        typer.echo("Ctrl-C stops.")
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.stop()
        typer.echo("fake WeCom stopped")


def _config_path(config: Path | None, workspace: Path | None) -> Path:
    if config is not None:
        return config
    roots = [workspace] if workspace is not None else []
    if not roots and os.environ.get("CLAWFED_WORKSPACE"):
        roots = [Path(os.environ["CLAWFED_WORKSPACE"])]
    roots = roots or [Path("."), Path("ws")]
    for root in roots:
        if (root / CONFIG_NAME).is_file():
            return root / CONFIG_NAME
    tried = ", ".join(str(r / CONFIG_NAME) for r in roots)
    raise ConfigError(f"no {CONFIG_NAME} found (looked at {tried}); pass --config FILE")


@app.command("send-test")
def send_test(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="YAML file with a chat: section.")
    ] = None,
    workspace: WorkspaceOpt = None,
    channel: Annotated[
        list[str] | None, typer.Option("--channel", help="Channel name (repeatable; all if none).")
    ] = None,
    to: Annotated[str, typer.Option(help="WeCom user ids for app channels (a|b).")] = "",
    text: Annotated[str, typer.Option(help="The message text.")] = DEFAULT_TEXT,
) -> None:
    """Send one text message through the configured chat channels, now (no outbox)."""
    chat = read_chat_config(_config_path(config, workspace))
    names = channel or sorted(chat.channels)
    unknown = [n for n in names if n not in chat.channels]
    if unknown:
        raise ConfigError(f"unknown channel(s) {unknown}; configured: {sorted(chat.channels)}")
    if not text.strip():
        raise ConfigError("--text must not be empty")
    channels = ConfiguredChannels(chat)
    failed = 0
    try:
        for name in names:
            target = to if isinstance(chat.channels[name], WeComAppSettings) else ""
            try:
                channels.channel(name, target).send(OutgoingMessage.text_message(text))
            except (ChatError, ConfigError) as exc:
                failed += 1
                err_console.print(f"[red]{name}: failed[/] {exc}", highlight=False)
                continue
            console.print(f"{name}: sent", highlight=False)
    finally:
        channels.close()
    if failed:
        raise typer.Exit(1)
