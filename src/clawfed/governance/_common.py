"""Input checks shared by the governance stores: names, timestamps and JSON values."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from clawfed.core.errors import StoreError

#: A value that survives a JSON round trip unchanged (after normalization).
JSONValue = str | int | float | bool | None | Sequence["JSONValue"] | Mapping[str, "JSONValue"]


def require_text(value: object, what: str, max_len: int) -> str:
    """Return ``value`` if it is a non-blank string of at most ``max_len`` characters."""
    if not isinstance(value, str):
        raise StoreError(f"{what} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise StoreError(f"{what} must not be empty or blank, got {value!r}")
    if value != value.strip():
        raise StoreError(f"{what} must not start or end with whitespace, got {value!r}")
    if len(value) > max_len:
        raise StoreError(f"{what} must be at most {max_len} characters, got {len(value)}")
    return value


def require_count(value: object, what: str, *, minimum: int = 0) -> int:
    """Return ``value`` if it is an ``int`` (not a bool) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise StoreError(f"{what} must be an integer, got {value!r}")
    if value < minimum:
        raise StoreError(f"{what} must be >= {minimum}, got {value}")
    return value


def utc(value: object, what: str) -> datetime:
    """Return a timezone-aware ``value`` converted to UTC; naive datetimes are refused."""
    if not isinstance(value, datetime):
        raise StoreError(f"{what} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise StoreError(f"{what} must be timezone-aware, got naive {value.isoformat()}")
    return value.astimezone(UTC)


def now_utc() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


def canonical_json(value: object, what: str) -> str:
    """Serialize ``value`` as canonical JSON: sorted keys, no spaces, UTF-8, no NaN."""
    try:
        return json.dumps(
            value,
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
            default=_mapping_as_dict,
        )
    except (TypeError, ValueError) as exc:
        raise StoreError(f"{what} must be JSON-serializable without NaN/Inf: {exc}") from exc


def _mapping_as_dict(value: object) -> dict[Any, Any]:
    """Let ``json.dumps`` write read-only mappings (``MappingProxyType``) like dicts."""
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def plain_json(value: object, what: str) -> Any:
    """Return ``value`` as it reads back after being stored as JSON (tuples become lists).

    Mapping keys must be strings: JSON would silently turn other keys into strings.
    """
    _check_keys(value, what)
    return json.loads(canonical_json(value, what))


def json_object(value: object, what: str) -> dict[str, Any]:
    """Like :func:`plain_json`, but ``value`` must be a mapping."""
    if not isinstance(value, Mapping):
        raise StoreError(f"{what} must be a mapping, got {type(value).__name__}")
    out: dict[str, Any] = plain_json(value, what)
    return out


def metric_map(value: Mapping[str, float], what: str) -> dict[str, float]:
    """Return a plain copy of ``value`` after checking names are strings and values finite."""
    out: dict[str, float] = {}
    for name, v in value.items():
        require_text(name, f"{what}: metric name", 128)
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise StoreError(f"{what}: metric {name!r} must be a finite number, got {v!r}")
        out[name] = float(v)
    return out


def _check_keys(value: object, what: str) -> None:
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                raise StoreError(f"{what}: mapping keys must be strings, got {k!r}")
            _check_keys(v, what)
    elif isinstance(value, list | tuple):
        for v in value:
            _check_keys(v, what)
