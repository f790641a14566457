"""Building the configured chat channels, and their send rates, from a ``ChatConfig``."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import httpx

from clawfed.chat.channel import Channel
from clawfed.chat.channels.dingtalk import DingTalkChannel
from clawfed.chat.channels.feishu import FeishuChannel
from clawfed.chat.channels.slack import SlackChannel
from clawfed.chat.channels.wecom_app import WeComAppChannel
from clawfed.chat.channels.wecom_robot import WeComRobotChannel
from clawfed.chat.errors import MessageInvalidError
from clawfed.chat.outbox import RateWindow
from clawfed.chat.service.config import (
    ChatConfig,
    DingTalkSettings,
    FeishuSettings,
    SlackSettings,
    WeComAppSettings,
    WeComRobotSettings,
)
from clawfed.chat.wecom_api import WeComClient, WeComRobot
from clawfed.chat.wecom_messages import Recipients
from clawfed.core.errors import ConfigError

#: Sends per window each kind of channel allows (the outbox queues beyond it).
RATE_WINDOWS: dict[str, RateWindow] = {
    "wecom_robot": RateWindow(20, 60.0),
    "dingtalk": RateWindow(20, 60.0),
    "feishu": RateWindow(5, 1.0),
    "slack": RateWindow(1, 1.0),
}


def rate_windows(config: ChatConfig) -> dict[str, RateWindow]:
    """The send-rate window of every configured channel that has one, by channel name."""
    return {
        name: RATE_WINDOWS[channel.type]
        for name, channel in config.channels.items()
        if channel.type in RATE_WINDOWS
    }


def recipients(settings: WeComAppSettings, target: str) -> Recipients:
    """Who an application message goes to: ``target`` user ids, else the configured ones."""
    try:
        if target:
            return Recipients(users=tuple(u for u in target.split("|") if u))
        return Recipients(users=settings.to_users, parties=settings.to_parties)
    except MessageInvalidError as exc:
        raise ConfigError(f"recipients {target!r}: {exc}") from exc


class ConfiguredChannels:
    """The channels of a ``ChatConfig``, built on first use and shared (a ``ChannelDirectory``).

    Parameters
    ----------
    config
        The chat configuration.
    http
        The HTTP client every channel uses (made and owned when omitted).
    sleep
        How a channel waits for a rate-limit slot (default ``time.sleep``).
    """

    def __init__(
        self,
        config: ChatConfig,
        http: httpx.Client | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._config = config
        self._owns_http = http is None
        self._http = http if http is not None else httpx.Client(timeout=10.0)
        self._sleep = sleep
        self._lock = threading.Lock()
        self._built: dict[str, Channel] = {}
        self._clients: dict[str, WeComClient] = {}

    def client(self, name: str) -> WeComClient:
        """The ``WeComClient`` of application channel ``name`` (one per channel)."""
        settings = self._config.channels.get(name)
        if not isinstance(settings, WeComAppSettings):
            raise ConfigError(f"chat channel {name!r} is not a configured wecom_app channel")
        with self._lock:
            client = self._clients.get(name)
            if client is None:
                client = WeComClient(
                    settings.api_base,
                    settings.corp_id,
                    settings.corp_secret.get_secret_value(),
                    settings.agent_id,
                    self._http,
                )
                self._clients[name] = client
            return client

    def channel(self, name: str, target: str) -> Channel:
        """The channel ``name`` addressed to ``target`` (see ``ChannelDirectory``)."""
        settings = self._config.channels.get(name)
        if settings is None:
            raise ConfigError(
                f"no chat channel named {name!r}; configured: {sorted(self._config.channels)}"
            )
        if isinstance(settings, WeComAppSettings):
            return WeComAppChannel(self.client(name), recipients(settings, target))
        if target:
            raise ConfigError(f"chat channel {name!r} ({settings.type}) takes no target")
        with self._lock:
            built = self._built.get(name)
            if built is None:
                built = self._build(settings)
                self._built[name] = built
            return built

    def _build(
        self, s: WeComRobotSettings | DingTalkSettings | FeishuSettings | SlackSettings
    ) -> Channel:
        url = s.webhook_url.get_secret_value()
        if isinstance(s, WeComRobotSettings):
            # no in-client retries on 45009: the outbox reschedules instead of sleeping
            robot = WeComRobot(url, self._http, sleep=self._sleep, max_rate_limit_retries=0)
            return WeComRobotChannel(robot)
        if isinstance(s, DingTalkSettings):
            secret = s.secret.get_secret_value() if s.secret else None
            return DingTalkChannel(url, secret, self._http, sleep=self._sleep)
        if isinstance(s, FeishuSettings):
            secret = s.secret.get_secret_value() if s.secret else None
            return FeishuChannel(url, secret, self._http, sleep=self._sleep)
        return SlackChannel(url, self._http, sleep=self._sleep)

    def close(self) -> None:
        """Close the HTTP client if this object made it."""
        if self._owns_http:
            self._http.close()
