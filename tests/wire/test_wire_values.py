"""Task config values through ``map<string, Value>``: types kept, bad values refused."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clawfed.core import ConfigError
from clawfed.wire import (
    ConfigValue,
    decode_values,
    encode_values,
    fill_values,
    from_value,
    to_value,
)
from clawfed.wire._proto import federation_pb2 as pb

INT64 = st.integers(-(1 << 63), (1 << 63) - 1)
SCALARS = st.one_of(
    st.booleans(), INT64, st.floats(allow_nan=False, allow_infinity=False), st.text()
)


def through_wire(values: dict[str, ConfigValue]) -> dict[str, ConfigValue]:
    task = pb.Task(task_id="t", config=encode_values(values))
    parsed = pb.Task.FromString(task.SerializeToString())
    return decode_values(parsed.config)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(min_size=1), SCALARS, max_size=8))
def test_values_round_trip_with_their_types(values: dict[str, ConfigValue]) -> None:
    out = through_wire(values)
    assert out == values
    for k, v in values.items():
        assert type(out[k]) is type(v), k


def test_bool_stays_bool_and_int_stays_int() -> None:
    out = through_wire({"shuffle": True, "epochs": 1, "off": False, "zero": 0, "lr": 1.0})
    assert out["shuffle"] is True and out["off"] is False
    assert type(out["epochs"]) is int and out["epochs"] == 1
    assert type(out["zero"]) is int
    assert type(out["lr"]) is float
    assert to_value(True).WhichOneof("kind") == "b"
    assert to_value(1).WhichOneof("kind") == "i"


def test_int64_bounds_and_numpy_scalars() -> None:
    out = through_wire(
        {
            "lo": -(1 << 63),
            "hi": (1 << 63) - 1,
            "np_int": np.int32(-4),  # type: ignore[dict-item]
            "np_float": np.float32(0.5),  # type: ignore[dict-item]
            "np_bool": np.bool_(True),  # type: ignore[dict-item]
        }
    )
    assert out == {
        "lo": -(1 << 63),
        "hi": (1 << 63) - 1,
        "np_int": -4,
        "np_float": 0.5,
        "np_bool": True,
    }
    assert out["np_bool"] is True


def test_fill_values_writes_into_an_existing_task() -> None:
    task = pb.Task(task_id="t", config=encode_values({"keep": "me", "lr": 0.1}))
    fill_values(task.config, {"lr": 0.01, "mu": 3})
    assert decode_values(task.config) == {"keep": "me", "lr": 0.01, "mu": 3}


def test_fill_values_writes_nothing_when_a_value_is_refused() -> None:
    task = pb.Task(task_id="t")
    with pytest.raises(ConfigError):
        fill_values(task.config, {"ok": 1, "bad": None})  # type: ignore[dict-item]
    assert len(task.config) == 0


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (None, "got NoneType"),
        ([1, 2], "got list"),
        (b"raw", "got bytes"),
        ({"a": 1}, "got dict"),
        (1 + 2j, "got complex"),
        (Decimal("0.1"), "got Decimal"),
        (1 << 63, "must fit in int64"),
        (-(1 << 63) - 1, "must fit in int64"),
        (float("nan"), "must be finite"),
        (float("inf"), "must be finite"),
        ("\ud800", "valid UTF-8"),
    ],
)
def test_unsupported_values_are_config_errors(value: object, words: str) -> None:
    with pytest.raises(ConfigError, match=words) as exc:
        encode_values({"rounds": value})  # type: ignore[dict-item]
    assert "'rounds'" in str(exc.value)


@pytest.mark.parametrize("key", ["", 3, "\udc80"])
def test_bad_keys_are_config_errors(key: object) -> None:
    with pytest.raises(ConfigError, match="config keys must be"):
        encode_values({key: 1})  # type: ignore[dict-item]


def test_empty_value_from_the_wire_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="'lr': the Value holds no"):
        from_value(pb.Value(), key="lr")
    task = pb.Task(task_id="t")
    task.config["lr"].SetInParent()
    with pytest.raises(ConfigError):
        decode_values(task.config)
