"""``build_strategy``: names and settings from job files, with precise errors."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from clawfed.aggregation import (
    PROXIMAL_MU_KEY,
    FedAvg,
    Krum,
    ServerOptStrategy,
    Strategy,
    TrimmedMean,
    build_strategy,
    known_strategies,
    settings_model,
)
from clawfed.core import ConfigError, NodeInfo

_MINIMAL: dict[str, dict[str, object]] = {"norm_bounding": {"max_norm": 1.0}}


def test_known_strategies() -> None:
    assert known_strategies() == (
        "fedadagrad",
        "fedadam",
        "fedavg",
        "fedavgm",
        "fedprox",
        "fedyogi",
        "krum",
        "median",
        "multi_krum",
        "norm_bounding",
        "quality_weighted",
        "trimmed_mean",
    )


@pytest.mark.parametrize("name", known_strategies())
def test_every_known_name_builds_a_fresh_strategy(name: str) -> None:
    a = build_strategy(name, _MINIMAL.get(name, {}))
    b = build_strategy(name, _MINIMAL.get(name, {}))
    assert isinstance(a, Strategy)
    assert a.name == name
    assert a is not b


def test_settings_reach_the_strategy() -> None:
    adam = build_strategy("fedadam", {"server_lr": 0.5, "beta1": 0.0, "tau": 0.01})
    assert isinstance(adam, ServerOptStrategy)
    assert adam.optimizer.kind == "adam"
    assert (adam.optimizer.lr, adam.optimizer.beta1, adam.optimizer.tau) == (0.5, 0.0, 0.01)  # type: ignore[attr-defined]
    krum = build_strategy("multi_krum", {"f": 2, "m": 3})
    assert isinstance(krum, Krum) and (krum.f, krum.m) == (2, 3)
    tm = build_strategy("trimmed_mean", {"beta": 0.2})
    assert isinstance(tm, TrimmedMean) and tm.beta == 0.2
    prox = build_strategy("fedprox", {"proximal_mu": 0.3})
    [instr] = prox.configure(1, [NodeInfo("n1", "credit")])
    assert instr.config[PROXIMAL_MU_KEY] == 0.3
    assert isinstance(build_strategy("fedavg", {}), FedAvg)


def test_unknown_strategy_lists_known_names() -> None:
    with pytest.raises(ConfigError) as exc:
        build_strategy("fedadm", {})
    msg = str(exc.value)
    assert "unknown strategy 'fedadm'" in msg
    assert "(did you mean 'fedadam'?); known strategies:" in msg
    assert all(n in msg for n in known_strategies())
    with pytest.raises(ConfigError, match="unknown strategy 'zzz'; known strategies: fedadagrad"):
        settings_model("zzz")


@pytest.mark.parametrize(
    ("name", "settings", "message"),
    [
        ("krum", {"ff": 1}, r"unknown setting 'ff' \(settings of 'krum': f\)"),
        ("krum", {"m": 2}, r"unknown setting 'm'"),
        ("fedavg", {"lr": 1}, r"unknown setting 'lr' \(settings of 'fedavg': none\)"),
        ("krum", {"f": -1}, r"setting 'f': input should be greater than or equal to 0, got -1"),
        ("krum", {"f": "1"}, r"setting 'f': input should be a valid integer, got '1'"),
        ("krum", {"f": True}, r"setting 'f': input should be a valid integer, got True"),
        ("trimmed_mean", {"beta": 0.5}, r"setting 'beta': input should be less than 0.5"),
        ("fedadam", {"tau": float("nan")}, r"setting 'tau': input should be a finite number"),
        ("fedyogi", {"beta2": 1.0}, r"setting 'beta2': input should be less than 1"),
        ("fedavgm", {"momentum": 1.0}, r"setting 'momentum'"),
        ("fedprox", {"proximal_mu": 0}, r"setting 'proximal_mu': input should be greater than 0"),
        ("norm_bounding", {}, r"setting 'max_norm' is required"),
    ],
)
def test_bad_settings_are_named(name: str, settings: Mapping[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as exc:
        build_strategy(name, settings)
    assert f"invalid settings for strategy {name!r}" in str(exc.value)


def test_several_problems_are_all_reported_and_input_is_not_mutated() -> None:
    settings: dict[str, object] = {"f": -1, "x": 2}
    with pytest.raises(ConfigError) as exc:
        build_strategy("krum", settings)
    assert "'f'" in str(exc.value) and "'x'" in str(exc.value)
    assert settings == {"f": -1, "x": 2}


def test_settings_must_be_a_mapping() -> None:
    with pytest.raises(ConfigError, match="must be a mapping, got list"):
        build_strategy("fedavg", [("a", 1)])  # type: ignore[arg-type]
