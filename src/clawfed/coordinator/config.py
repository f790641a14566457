"""Coordinator settings: loaded from ``<workspace>/clawfed.yaml``, overridable by env vars."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from clawfed.core import ConfigError

CONFIG_NAME = "clawfed.yaml"
DEFAULT_PORT = 18789
MAX_CHUNK_SIZE = 3 << 20  # stays under gRPC's default 4 MiB message limit


class CoordinatorSettings(BaseSettings):
    """Everything a coordinator needs to start; defaults are the safe ones."""

    model_config = SettingsConfigDict(env_prefix="CLAWFED_", extra="forbid", frozen=True)

    federation: str = Field(default="clawfed", min_length=1)
    bind_host: str = "127.0.0.1"
    port: int = Field(default=DEFAULT_PORT, ge=0, le=65535)
    advertised_host: str = "127.0.0.1"
    allowlist: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    database_url: str = ""
    artifacts_dir: str = "artifacts"
    heartbeat_interval_s: float = Field(default=5.0, gt=0)
    heartbeat_misses: int = Field(default=3, ge=1)
    chunk_size: int = Field(default=1 << 20, ge=1024, le=MAX_CHUNK_SIZE)
    max_update_bytes: int = Field(default=4 << 30, gt=0)
    max_inflight_updates: int = Field(default=1, ge=1)
    #: The ``chat:`` section (channels, routes, callback endpoint); validated by
    #: ``clawfed.chat.service.load_chat_config`` when the coordinator starts.
    chat: dict[str, Any] = Field(default_factory=dict)

    @field_validator("allowlist")
    @classmethod
    def _cidrs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for cidr in value:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError as exc:
                raise ValueError(f"allowlist entry {cidr!r} is not a CIDR network") from exc
        return value


def settings_from_mapping(data: dict[str, Any], *, source: str) -> CoordinatorSettings:
    """Validate ``data`` into settings, turning pydantic's errors into one ConfigError."""
    try:
        return CoordinatorSettings(**data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"{source}: {problems}") from exc


def load_settings(workspace: Path) -> CoordinatorSettings:
    """Read the workspace's config file; relative paths in it are relative to the workspace."""
    path = workspace / CONFIG_NAME
    if not path.is_file():
        raise ConfigError(
            f"{workspace} is not a clawfed workspace ({CONFIG_NAME} missing); "
            f"create one with `clawfed init {workspace}`"
        )
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of settings, got {type(raw).__name__}")
    settings = settings_from_mapping(raw, source=str(path))
    if not settings.database_url:
        raise ConfigError(f"{path}: database_url must be set")
    return settings


def save_settings(workspace: Path, settings: CoordinatorSettings) -> Path:
    """Write ``settings`` as YAML into the workspace."""
    path = workspace / CONFIG_NAME
    data = settings.model_dump(mode="json")
    data["allowlist"] = list(settings.allowlist)
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path
