"""The chat: config section: defaults, placeholder secrets, URLs, routes, files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from clawfed.chat.channels.dingtalk import DingTalkChannel
from clawfed.chat.channels.feishu import FeishuChannel
from clawfed.chat.channels.slack import SlackChannel
from clawfed.chat.channels.wecom_app import WeComAppChannel
from clawfed.chat.nlu import Lang
from clawfed.chat.outbox import RateWindow
from clawfed.chat.service import (
    ConfiguredChannels,
    EventKind,
    load_chat_config,
    rate_windows,
    read_chat_config,
)
from clawfed.chat.service.config import is_placeholder
from clawfed.core.errors import ConfigError

KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
ROBOT = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa"


def app_channel(**overrides: Any) -> dict[str, Any]:
    channel: dict[str, Any] = {
        "type": "wecom_app",
        "corp_id": "wwcorp123",
        "corp_secret": "K8s2-realLookingSecret-q9",
        "agent_id": 1000002,
        "token": "QDG6eK",
        "encoding_aes_key": KEY,
        "to_users": ["zhangsan"],
    }
    channel.update(overrides)
    return channel


def config(**top: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "channels": {"group": {"type": "wecom_robot", "webhook_url": ROBOT}, "app": app_channel()},
        "routes": [{"events": ["round_completed", "anomaly"], "channel": "group"}],
    }
    data.update(top)
    return data


def test_defaults_are_chinese_and_not_demo() -> None:
    chat = load_chat_config(config(), source="t")
    assert chat.language is Lang.ZH and not chat.demo
    assert chat.http_host == "127.0.0.1"
    assert [r.channel for r in chat.routes_for(EventKind.ANOMALY)] == ["group"]
    assert chat.routes_for(EventKind.NODE_LOST) == []
    assert set(chat.app_channels()) == {"app"}
    assert rate_windows(chat) == {"group": RateWindow(20, 60.0)}
    assert load_chat_config(None, source="t").channels == {}


def test_secrets_do_not_show_in_repr() -> None:
    chat = load_chat_config(config(), source="t")
    text = repr(chat)
    assert "realLookingSecret" not in text and KEY not in text and "693a91f6" not in text


@pytest.mark.parametrize("secret", ["changeme", "CHANGE_ME", "<secret>", "xxxx", "your-secret"])
def test_placeholder_secrets_are_refused_outside_demo(secret: str) -> None:
    data = config(channels={"app": app_channel(corp_secret=secret)}, routes=[])
    with pytest.raises(ConfigError, match=r"channels\.app\.corp_secret looks like a placeholder"):
        load_chat_config(data, source="clawfed.yaml")
    demo = load_chat_config({**data, "demo": True}, source="t")
    assert demo.demo


def test_placeholder_webhook_key_is_refused() -> None:
    url = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=changeme"
    data = config(channels={"group": {"type": "wecom_robot", "webhook_url": url}})
    with pytest.raises(ConfigError, match="webhook_url credential looks like a placeholder"):
        load_chat_config(data, source="t")


def test_plain_http_only_to_loopback() -> None:
    local = "http://127.0.0.1:9999/cgi-bin/webhook/send?key=k1"
    load_chat_config(
        config(channels={"g": {"type": "wecom_robot", "webhook_url": local}}, routes=[]), source="t"
    )
    remote = "http://hooks.example.com/services/T1/B2/c3"
    with pytest.raises(ConfigError, match="must be an https:// URL"):
        load_chat_config(
            config(channels={"s": {"type": "slack", "webhook_url": remote}}, routes=[]), source="t"
        )
    with pytest.raises(ConfigError, match="api_base must be an https"):
        load_chat_config(
            config(channels={"a": app_channel(api_base="http://10.0.0.5/cgi-bin")}, routes=[]),
            source="t",
        )


@pytest.mark.parametrize(
    ("routes", "match"),
    [
        ([{"events": ["anomaly"], "channel": "nope"}], "not among channels"),
        ([{"events": ["anomaly"], "channel": "group", "target": "u1"}], "only wecom_app"),
        ([{"events": [], "channel": "group"}], "at least 1"),
        ([{"events": ["weather"], "channel": "group"}], "events"),
    ],
)
def test_bad_routes_are_refused(routes: list[dict[str, Any]], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_chat_config(config(routes=routes), source="t")


def test_app_route_needs_recipients() -> None:
    channels = {"app": app_channel(to_users=[])}
    with pytest.raises(ConfigError, match="needs a target or to_users"):
        load_chat_config(
            config(channels=channels, routes=[{"events": ["anomaly"], "channel": "app"}]),
            source="t",
        )
    ok = config(
        channels=channels,
        routes=[{"events": ["anomaly"], "channel": "app", "target": "lisi|wangwu"}],
    )
    assert load_chat_config(ok, source="t").routes[0].target == "lisi|wangwu"


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"encoding_aes_key": "short"}, "43 characters"),
        ({"agent_id": 0}, "greater than 0"),
        ({"callback_path": "wecom"}, "callback_path"),
        ({"to_users": ["a|b"]}, "to_users"),
        ({"colour": "red"}, "Extra inputs"),
    ],
)
def test_bad_app_settings_are_refused(overrides: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_chat_config(config(channels={"app": app_channel(**overrides)}, routes=[]), source="t")


def test_other_top_level_problems() -> None:
    with pytest.raises(ConfigError, match="timezone"):
        load_chat_config(config(timezone="Mars/Olympus"), source="t")
    with pytest.raises(ConfigError, match="language"):
        load_chat_config(config(language="fr"), source="t")
    with pytest.raises(ConfigError, match="channel names"):
        load_chat_config(config(channels={"bad name": app_channel()}, routes=[]), source="t")
    two = {"a": app_channel(), "b": app_channel()}
    with pytest.raises(ConfigError, match="already used"):
        load_chat_config(config(channels=two, routes=[]), source="t")


def test_read_from_clawfed_yaml(tmp_path: Path) -> None:
    path = tmp_path / "clawfed.yaml"
    path.write_text(
        "federation: bank\nchat:\n  language: en\n  channels:\n    group:\n"
        f"      type: wecom_robot\n      webhook_url: '{ROBOT}'\n",
        encoding="utf-8",
    )
    assert read_chat_config(path).language is Lang.EN
    path.write_text("federation: bank\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="no chat: section"):
        read_chat_config(path)
    with pytest.raises(ConfigError, match="cannot read"):
        read_chat_config(tmp_path / "missing.yaml")


def test_placeholder_rule() -> None:
    assert is_placeholder("changeme") and is_placeholder("${WECOM_SECRET}")
    assert is_placeholder("0000") and is_placeholder("")
    assert not is_placeholder("K8s2-realLookingSecret-q9")


def test_every_channel_type_is_built_from_config() -> None:
    chat = load_chat_config(
        {
            "channels": {
                "ding": {
                    "type": "dingtalk",
                    "webhook_url": "https://oapi.dingtalk.com/robot/send?access_token=9f3b7c1d",
                    "secret": "SEC9a8b7c6d5e4f",
                },
                "lark": {
                    "type": "feishu",
                    "webhook_url": "https://open.feishu.cn/open-apis/bot/v2/hook/2f9e1c7a",
                },
                "slack": {
                    "type": "slack",
                    "webhook_url": "https://hooks.slack.com/services/T01/B02/x9Yz",
                },
                "app": app_channel(),
            }
        },
        source="t",
    )
    channels = ConfiguredChannels(chat)
    try:
        assert isinstance(channels.channel("ding", ""), DingTalkChannel)
        assert isinstance(channels.channel("lark", ""), FeishuChannel)
        assert isinstance(channels.channel("slack", ""), SlackChannel)
        assert channels.channel("slack", "") is channels.channel("slack", "")
        assert isinstance(channels.channel("app", "lisi"), WeComAppChannel)
        with pytest.raises(ConfigError, match="takes no target"):
            channels.channel("ding", "lisi")
        with pytest.raises(ConfigError, match="no chat channel named"):
            channels.channel("nope", "")
        with pytest.raises(ConfigError, match="recipients"):
            channels.channel("app", "a||@all")
    finally:
        channels.close()
    assert rate_windows(chat) == {
        "ding": RateWindow(20, 60.0),
        "lark": RateWindow(5, 1.0),
        "slack": RateWindow(1, 1.0),
    }
