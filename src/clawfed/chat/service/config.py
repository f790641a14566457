"""The ``chat:`` section of ``clawfed.yaml``: language, channels and which events go where."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from clawfed.chat.errors import InvalidAesKeyError
from clawfed.chat.nlu.lang import Lang
from clawfed.chat.wecom_api import DEFAULT_API_BASE
from clawfed.chat.wecom_crypto import decode_aes_key
from clawfed.core.errors import ConfigError
from clawfed.governance.policy import Role

CHAT_SECTION = "chat"
DEFAULT_CHAT_PORT = 18790
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_PATH = re.compile(r"^/[A-Za-z0-9_\-/.]{0,200}$")
_PLACEHOLDERS = frozenset(
    {
        "changeme", "change-me", "change_me", "placeholder", "secret", "password", "todo",
        "fixme", "xxx", "example", "dummy", "your-secret", "your_secret", "yoursecret",
        "your-key", "your_key", "yourkey", "none", "null", "key", "token",
    }
)  # fmt: skip


class EventKind(StrEnum):
    """Kinds of notification a route can carry."""

    JOB_STARTED = "job_started"
    ROUND_COMPLETED = "round_completed"
    JOB_FINISHED = "job_finished"  # completed or failed
    NODE_JOINED = "node_joined"
    NODE_LOST = "node_lost"
    NODE_BACK = "node_back"
    VERSION_PUBLISHED = "version_published"
    ANOMALY = "anomaly"  # metric drop, update rejected, node dropped
    APPROVAL_REQUESTED = "approval_requested"


def is_placeholder(value: str) -> bool:
    """Whether a secret is an obvious stand-in ("changeme", "<key>", "xxxx", "0000"…)."""
    v = value.strip().lower()
    squeezed = v.replace("-", "").replace("_", "")
    return (
        not v
        or v in _PLACEHOLDERS
        or "changeme" in squeezed
        or "replaceme" in squeezed
        or (v.startswith("<") and v.endswith(">"))
        or (v.startswith("${") and v.endswith("}"))
        or set(squeezed) <= {"x"}
        or set(squeezed) <= {"0"}
    )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_url(url: str, where: str) -> None:
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname and _loopback(parts.hostname):
        return
    raise ValueError(
        f"{where} must be an https:// URL (plain http only to a loopback host), "
        f"got scheme {parts.scheme!r} host {parts.hostname!r}"
    )


def _url_secret(url: str) -> str:
    """The part of a webhook URL that is its credential (key, access_token or last path part)."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    for name in ("key", "access_token"):
        if query.get(name):
            return query[name][0]
    return parts.path.rstrip("/").rsplit("/", 1)[-1]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WeComRobotSettings(_Model):
    """A WeCom group robot (``.../webhook/send?key=KEY``)."""

    type: Literal["wecom_robot"]
    webhook_url: SecretStr
    markdown: bool = True


class WeComAppSettings(_Model):
    """A WeCom self-built application: sends with ``message/send``, receives callbacks."""

    type: Literal["wecom_app"]
    api_base: str = DEFAULT_API_BASE
    corp_id: str = Field(min_length=1, max_length=64)
    corp_secret: SecretStr
    agent_id: int = Field(gt=0)
    token: SecretStr
    encoding_aes_key: SecretStr
    callback_path: str = "/wecom/callback"
    to_users: tuple[str, ...] = ()
    to_parties: tuple[int, ...] = ()
    markdown: bool = False  # app markdown is not shown in the WeChat plug-in

    @model_validator(mode="after")
    def _check(self) -> WeComAppSettings:
        if not _PATH.match(self.callback_path):
            raise ValueError(f"callback_path must be a URL path like /wecom/callback, got "
                             f"{self.callback_path!r}")  # fmt: skip
        try:
            decode_aes_key(self.encoding_aes_key.get_secret_value())
        except InvalidAesKeyError as exc:
            raise ValueError(f"encoding_aes_key: {exc}") from None
        for user in self.to_users:
            if not user or "|" in user or user != user.strip():
                raise ValueError(f"to_users must be WeCom user ids, got {user!r}")
        return self


class DingTalkSettings(_Model):
    """A DingTalk custom robot, optionally signed (加签)."""

    type: Literal["dingtalk"]
    webhook_url: SecretStr
    secret: SecretStr | None = None
    markdown: bool = True


class FeishuSettings(_Model):
    """A Feishu / Lark custom bot, optionally signed."""

    type: Literal["feishu"]
    webhook_url: SecretStr
    secret: SecretStr | None = None
    markdown: bool = True


class SlackSettings(_Model):
    """A Slack incoming webhook."""

    type: Literal["slack"]
    webhook_url: SecretStr
    markdown: bool = True


ChannelSettings = Annotated[
    WeComRobotSettings | WeComAppSettings | DingTalkSettings | FeishuSettings | SlackSettings,
    Field(discriminator="type"),
]


class Route(_Model):
    """Send notifications of ``events`` to ``channel``.

    ``target`` is only for WeCom applications: user ids joined by ``|`` (as ``touser``);
    "" means the application's configured recipients.
    """

    events: tuple[EventKind, ...] = Field(min_length=1)
    channel: str
    target: str = ""


def _secrets(name: str, channel: Any) -> list[tuple[str, str]]:
    where = f"channels.{name}"
    found: list[tuple[str, str]] = []
    if isinstance(channel, WeComAppSettings):
        found += [(f"{where}.corp_secret", channel.corp_secret.get_secret_value())]
        found += [(f"{where}.token", channel.token.get_secret_value())]
        found += [(f"{where}.encoding_aes_key", channel.encoding_aes_key.get_secret_value())]
        return found
    url = channel.webhook_url.get_secret_value()
    found.append((f"{where}.webhook_url credential", _url_secret(url)))
    secret = getattr(channel, "secret", None)
    if isinstance(secret, SecretStr):
        found.append((f"{where}.secret", secret.get_secret_value()))
    return found


class PersonSettings(_Model):
    """Who a WeCom user is to clawfed: a role, a department, usable model services."""

    role: Role
    department: str | None = Field(default=None, min_length=1, max_length=128)
    entitlements: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> PersonSettings:
        if self.role is Role.DEPARTMENT_HEAD and self.department is None:
            raise ValueError("a department_head needs a department")
        if self.role in (Role.DATA_ADMIN, Role.AUDITOR) and self.department is not None:
            raise ValueError(f"a {self.role} sees across departments and takes no department")
        return self


class AccessSettings(_Model):
    """Who may ask what in chat.

    A WeCom user is found, in order: linked to a clawfed user in the store
    (``clawfed users link-wecom``), listed under ``people``, or (``lookup``) asked of WeCom
    with ``user/get``: the first of their WeCom departments named in ``wecom_departments``
    is their department, and being its leader (``is_leader_in_dept``) makes them its head;
    otherwise they are an employee. Anyone else is refused.
    """

    people: dict[str, PersonSettings] = Field(default_factory=dict)
    wecom_departments: dict[int, str] = Field(default_factory=dict)
    lookup: bool = True
    entitlements: tuple[str, ...] = ()  # model services every looked-up employee may use


class RegionQuerySettings(_Model):
    """Federated per-region questions: which columns, and the minimum group size k."""

    group_column: str = Field(default="region", min_length=1)
    period_column: str = Field(default="month", min_length=1)
    min_group_rows: int = Field(default=10, ge=1)
    jobs: dict[str, int] = Field(default_factory=dict)  # job -> its own k (at least 1)
    timeout_s: float = Field(default=60.0, gt=0, le=600)

    @model_validator(mode="after")
    def _check(self) -> RegionQuerySettings:
        for job, k in self.jobs.items():
            if k < 1:
                raise ValueError(f"jobs.{job}: min_group_rows must be >= 1, got {k}")
        return self

    def k_for(self, job: str) -> int:
        """The minimum group size of ``job``."""
        return self.jobs.get(job, self.min_group_rows)


class ChatConfig(_Model):
    """Everything the chat layer needs: reply language, channels, routes, the callback server.

    Placeholder secrets ("changeme", "<key>", all x / all 0) are refused unless ``demo`` is
    true; webhooks and API bases must be https (plain http only to loopback, for the fake).
    """

    language: Lang = Lang.ZH
    demo: bool = False
    timezone: str = "Asia/Shanghai"
    channels: dict[str, ChannelSettings] = Field(default_factory=dict)
    routes: tuple[Route, ...] = ()
    metric_drop_alert: float = Field(default=0.02, gt=0, le=1)
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=DEFAULT_CHAT_PORT, ge=0, le=65535)
    #: Who may ask what. None: no per-user checks and no chat audit (set it in production).
    access: AccessSettings | None = None
    region_query: RegionQuerySettings = Field(default_factory=RegionQuerySettings)
    #: A fixed "today" for relative dates ("上月"); demos and tests set it, production not.
    today: date | None = None

    @model_validator(mode="after")
    def _check(self) -> ChatConfig:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"timezone must be an IANA zone name, got {self.timezone!r}") from None
        paths: dict[str, str] = {}
        for name, channel in self.channels.items():
            if not _NAME.match(name):
                raise ValueError(f"channel names must match {_NAME.pattern}, got {name!r}")
            if isinstance(channel, WeComAppSettings):
                _check_url(channel.api_base, f"channels.{name}.api_base")
                if channel.callback_path in paths:
                    raise ValueError(
                        f"channels.{name}.callback_path {channel.callback_path!r} is already "
                        f"used by channel {paths[channel.callback_path]!r}"
                    )
                paths[channel.callback_path] = name
            else:
                _check_url(channel.webhook_url.get_secret_value(), f"channels.{name}.webhook_url")
            if not self.demo:
                for where, value in _secrets(name, channel):
                    if is_placeholder(value):
                        raise ValueError(
                            f"{where} looks like a placeholder ({value[:12]!r}); put the real "
                            "secret there, or set demo: true for the local demo only"
                        )
        for i, route in enumerate(self.routes):
            target = self.channels.get(route.channel)
            if target is None:
                raise ValueError(
                    f"routes[{i}] names channel {route.channel!r}, which is not among "
                    f"channels {sorted(self.channels)}"
                )
            if route.target and not isinstance(target, WeComAppSettings):
                raise ValueError(
                    f"routes[{i}]: only wecom_app channels take a target, {route.channel!r} "
                    f"is {target.type}"
                )
            if isinstance(target, WeComAppSettings) and not route.target:
                if not (target.to_users or target.to_parties):
                    raise ValueError(
                        f"routes[{i}]: wecom_app channel {route.channel!r} needs a target or "
                        "to_users / to_parties to send notifications to"
                    )
        return self

    @property
    def zone(self) -> ZoneInfo:
        """The time zone dates in chat are read and shown in."""
        return ZoneInfo(self.timezone)

    def app_channels(self) -> dict[str, WeComAppSettings]:
        """The WeCom application channels (each serves a callback)."""
        return {n: c for n, c in self.channels.items() if isinstance(c, WeComAppSettings)}

    def routes_for(self, kind: EventKind) -> list[Route]:
        """The routes that carry ``kind``."""
        return [r for r in self.routes if kind in r.events]


def load_chat_config(data: Mapping[str, Any] | None, *, source: str) -> ChatConfig:
    """Validate a ``chat:`` mapping; every problem is named in one ``ConfigError``."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: chat must be a mapping, got {type(data).__name__}")
    try:
        return ChatConfig.model_validate(dict(data))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(chat)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"{source}: chat: {problems}") from exc


def read_chat_config(path: Path) -> ChatConfig:
    """Read the ``chat:`` section of a YAML file (``clawfed.yaml`` or a file of its own)."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(raw, dict) or CHAT_SECTION not in raw:
        raise ConfigError(f"{path}: no {CHAT_SECTION}: section; add one to configure chat")
    return load_chat_config(raw[CHAT_SECTION], source=str(path))
