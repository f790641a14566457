"""Task configuration values: Python scalars to the proto ``Value`` message and back."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from google.protobuf.internal.containers import MessageMap

from clawfed.core.errors import ConfigError
from clawfed.wire._proto import federation_pb2 as pb

#: A configuration value that can cross the wire.
ConfigValue = str | int | float | bool

_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1


def to_value(value: ConfigValue, *, key: str = "value") -> pb.Value:
    """Wrap one scalar in a ``Value``; a bool stays a bool, never an int.

    numpy scalars (``np.bool_``, integers, floats) are accepted and converted.

    Raises
    ------
    ConfigError
        For any other type, an int outside int64, a non-finite float, or a string that is
        not valid UTF-8.
    """
    v: object = value
    if isinstance(v, bool | np.bool_):
        return pb.Value(b=bool(v))
    if isinstance(v, int | np.integer):
        i = int(v)
        if not _INT64_MIN <= i <= _INT64_MAX:
            raise ConfigError(f"config {key!r}: integers must fit in int64, got {i}")
        return pb.Value(i=i)
    if isinstance(v, float | np.floating):
        d = float(v)
        if not math.isfinite(d):
            raise ConfigError(f"config {key!r}: floats must be finite, got {d}")
        return pb.Value(d=d)
    if isinstance(v, str):
        try:
            return pb.Value(s=v)
        except UnicodeEncodeError as exc:
            raise ConfigError(
                f"config {key!r}: strings must be valid UTF-8, got {v[:40]!r}"
            ) from exc
    raise ConfigError(
        f"config {key!r}: values must be str, int, float or bool, got {type(v).__name__}"
    )


def from_value(value: pb.Value, *, key: str = "value") -> ConfigValue:
    """Unwrap a ``Value`` into the Python scalar it holds.

    Raises
    ------
    ConfigError
        If the ``Value`` holds nothing (no field of its ``kind`` is set).
    """
    kind = value.WhichOneof("kind")
    if kind == "b":
        return value.b
    if kind == "i":
        return value.i
    if kind == "d":
        return value.d
    if kind == "s":
        return value.s
    raise ConfigError(f"config {key!r}: the Value holds no str, int, float or bool")


def encode_values(values: Mapping[str, ConfigValue]) -> dict[str, pb.Value]:
    """Convert a mapping of scalars for a ``map<string, Value>`` field.

    Pass the result to the message constructor (``Task(config=...)``) or copy it into an
    existing message with ``fill_values``.

    Raises
    ------
    ConfigError
        If a key is not a non-empty string or a value is unsupported (see ``to_value``).
    """
    out: dict[str, pb.Value] = {}
    for k, v in values.items():
        if not isinstance(k, str) or not k:
            raise ConfigError(f"config keys must be non-empty strings, got {k!r}")
        try:
            k.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ConfigError(f"config keys must be valid UTF-8, got {k[:40]!r}") from exc
        out[k] = to_value(v, key=k)
    return out


def fill_values(target: MessageMap[str, pb.Value], values: Mapping[str, ConfigValue]) -> None:
    """Write ``values`` into an existing ``map<string, Value>`` field such as ``task.config``.

    Existing keys are overwritten; other keys are kept. Nothing is written if any value is
    refused.

    Raises
    ------
    ConfigError
        As ``encode_values``.
    """
    encoded = encode_values(values)
    for k, v in encoded.items():
        target[k].CopyFrom(v)


def decode_values(values: Mapping[str, pb.Value]) -> dict[str, ConfigValue]:
    """Convert a ``map<string, Value>`` field back into a dict of Python scalars.

    Raises
    ------
    ConfigError
        If a ``Value`` holds nothing.
    """
    return {k: from_value(v, key=k) for k, v in values.items()}
