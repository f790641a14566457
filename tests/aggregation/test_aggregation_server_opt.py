"""FedAvgM, FedAdam, FedYogi, FedAdagrad: hand-computed steps, state round trips, validation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from clawfed.aggregation import (
    AdaptiveKind,
    AdaptiveOptimizer,
    ArrayStateful,
    FedAdagradSettings,
    FedAdamSettings,
    FedAvgMSettings,
    FedYogiSettings,
    MomentumOptimizer,
    ServerOptStrategy,
    Strategy,
    TooFewUpdates,
    median_rule,
)
from clawfed.core import ConfigError, JobError, Update, Weights


def _w(*v: float) -> Weights:
    return Weights({"w": np.asarray(v, dtype=np.float32)})


def _round(s: ServerOptStrategy, g: Weights, deltas: list[tuple[int, Weights]]) -> Weights:
    agg = s.aggregator(g, 1)
    for i, (n, d) in enumerate(deltas):
        agg.add(Update(f"n{i}", n, d))
    return agg.result()


def test_fedavgm_two_rounds_hand_computed() -> None:
    s = FedAvgMSettings(server_lr=1.0, momentum=0.5).build()
    assert s.name == "fedavgm"
    deltas = [(1, _w(1.0, 0.0)), (3, _w(0.0, 3.0))]  # mean delta [0.25, 2.25]
    x1 = _round(s, _w(1.0, 2.0), deltas)
    np.testing.assert_allclose(x1["w"], [1.25, 4.25])  # v = [0.25, 2.25]
    x2 = _round(s, x1, deltas)
    np.testing.assert_allclose(x2["w"], [1.625, 7.625])  # v = 0.5 v + Δ = [0.375, 3.375]
    assert x2["w"].dtype == np.float32


def test_fedavgm_without_momentum_is_fedavg() -> None:
    s = ServerOptStrategy("plain", MomentumOptimizer(lr=1.0, momentum=0.0))
    np.testing.assert_allclose(
        _round(s, _w(1.0, 2.0), [(1, _w(1.0, 0.0)), (3, _w(0.0, 3.0))])["w"], [1.25, 4.25]
    )


def test_fedadagrad_hand_computed() -> None:
    # g = 4, tau = 3: m = 0.5*4 = 2, v = 3² + 4² = 25, x = 0 + 1 * 2 / (5 + 3) = 0.25
    s = FedAdagradSettings(server_lr=1.0, beta1=0.5, tau=3.0).build()
    np.testing.assert_allclose(_round(s, _w(0.0), [(1, _w(4.0))])["w"], [0.25])


def test_fedadam_hand_computed() -> None:
    # weighted mean g = (1*2 + 2*5) / 3 = 4, tau = 1 (v starts at 1), beta1 = beta2 = 0.5:
    # m = 2, v = 0.5*1 + 0.5*16 = 8.5, x = 1 * 2 / (sqrt(8.5) + 1); the zero coordinate stays
    s = FedAdamSettings(server_lr=1.0, beta1=0.5, beta2=0.5, tau=1.0).build()
    x = _round(s, _w(0.0, 7.0), [(1, _w(2.0, 0.0)), (2, _w(5.0, 0.0))])
    np.testing.assert_allclose(x["w"], [2.0 / (math.sqrt(8.5) + 1.0), 7.0], rtol=1e-6)


def test_fedyogi_hand_computed_both_signs() -> None:
    s = FedYogiSettings(server_lr=1.0, beta1=0.5, beta2=0.5, tau=1.0).build()
    # round 1: g = 4, v0 = 1 < g² so v = 1 + 0.5*16 = 9; m = 2; x = 2 / (3 + 1) = 0.5
    x1 = _round(s, _w(0.0), [(1, _w(2.0)), (2, _w(5.0))])
    np.testing.assert_allclose(x1["w"], [0.5])
    # round 2: g = 2, v = 9 > g² so v = 9 - 0.5*4 = 7; m = 0.5*2 + 0.5*2 = 2
    x2 = _round(s, x1, [(1, _w(2.0))])
    np.testing.assert_allclose(x2["w"], [0.5 + 2.0 / (math.sqrt(7.0) + 1.0)], rtol=1e-6)
    np.testing.assert_allclose(s.state_arrays()["v/w"], [7.0])
    np.testing.assert_allclose(s.state_arrays()["m/w"], [2.0])


def test_yogi_and_adam_differ_where_the_rules_differ() -> None:
    kw = {"server_lr": 1.0, "beta1": 0.5, "beta2": 0.5, "tau": 1.0}
    adam = _round(FedAdamSettings(**kw).build(), _w(0.0), [(1, _w(4.0))])
    yogi = _round(FedYogiSettings(**kw).build(), _w(0.0), [(1, _w(4.0))])
    np.testing.assert_allclose(adam["w"], [2.0 / (math.sqrt(8.5) + 1.0)], rtol=1e-6)
    np.testing.assert_allclose(yogi["w"], [0.5])


def test_result_steps_the_optimizer_once() -> None:
    s = FedAvgMSettings(server_lr=1.0, momentum=0.5).build()
    agg = s.aggregator(_w(0.0), 1)
    agg.add(Update("n1", 1, _w(1.0)))
    first = agg.result()
    assert agg.result() is first
    assert s.state_dict()["optimizer"]["step"] == 1
    with pytest.raises(JobError, match="already aggregated"):
        agg.add(Update("n2", 1, _w(1.0)))


def test_empty_round_is_refused_without_stepping() -> None:
    s = FedAdamSettings().build()
    with pytest.raises(TooFewUpdates, match="no update"):
        s.aggregator(_w(0.0), 1).result()
    assert s.state_dict()["optimizer"]["step"] == 0


def _three_rounds(s: ServerOptStrategy, g: Weights) -> Weights:
    for k in range(3):
        g = _round(s, g, [(2, _w(1.0 + k, -2.0)), (1, _w(0.5, 3.0 * k))])
    return g


@pytest.mark.parametrize(
    "settings",
    [
        FedAvgMSettings(momentum=0.7),
        FedAdamSettings(server_lr=0.3),
        FedYogiSettings(server_lr=0.3),
        FedAdagradSettings(server_lr=0.3),
    ],
)
def test_state_round_trip_continues_identically(
    settings: FedAvgMSettings | FedAdamSettings | FedYogiSettings | FedAdagradSettings,
) -> None:
    a = settings.build()
    assert isinstance(a, Strategy) and isinstance(a, ArrayStateful)
    assert len(a.state_arrays()) == 0
    g = _three_rounds(a, _w(0.0, 1.0))
    state = json.loads(json.dumps(a.state_dict()))
    arrays = Weights({k: v.copy() for k, v in a.state_arrays().items()})
    assert all(v.dtype == np.float32 for v in arrays.values())

    b = settings.build()
    b.load_state_dict(state)
    b.load_state_arrays(arrays)
    c = settings.build()  # the other order must work too
    c.load_state_arrays(arrays)
    c.load_state_dict(state)
    nxt = [(1, _w(0.25, -1.0))]
    ra, rb, rc = _round(a, g, nxt), _round(b, g, nxt), _round(c, g, nxt)
    np.testing.assert_array_equal(ra["w"], rb["w"])
    np.testing.assert_array_equal(ra["w"], rc["w"])
    assert a.state_dict() == b.state_dict() == c.state_dict()
    fresh = _round(settings.build(), g, nxt)
    assert not np.array_equal(fresh["w"], ra["w"])  # the state really mattered


def test_state_refuses_mismatches() -> None:
    a = FedAdamSettings().build()
    _three_rounds(a, _w(0.0, 1.0))
    state, arrays = a.state_dict(), a.state_arrays()

    with pytest.raises(ConfigError, match="saved by strategy 'fedadam' into 'fedyogi'"):
        FedYogiSettings().build().load_state_dict(state)
    other = ServerOptStrategy("fedadam", AdaptiveOptimizer(AdaptiveKind.YOGI))
    with pytest.raises(ConfigError, match="kind 'adam' into 'yogi'"):
        other.load_state_dict(state)

    b = FedAdamSettings().build()
    b.load_state_dict(state)
    stale = Weights({k: v + np.float32(1.0) for k, v in arrays.items()})
    with pytest.raises(ConfigError, match="do not match the arrays_sha256"):
        b.load_state_arrays(stale)
    with pytest.raises(JobError, match="state arrays were not restored"):
        _round(b, _w(0.0, 1.0), [(1, _w(1.0, 1.0))])

    c = FedAdamSettings().build()
    with pytest.raises(ConfigError, match="must be named '<slot>/<param>'"):
        c.load_state_arrays(Weights({"q/w": np.zeros(2, dtype=np.float32)}))
    with pytest.raises(ConfigError, match="must be float32"):
        c.load_state_arrays(Weights({"m/w": np.zeros(2), "v/w": np.zeros(2)}))
    with pytest.raises(ConfigError, match="'step' must be an int >= 0"):
        c.load_state_dict({**state, "optimizer": {**state["optimizer"], "step": -1}})
    c.load_state_arrays(arrays)
    with pytest.raises(ConfigError, match="optimizer state is for tensors"):
        _round(c, Weights({"w": np.zeros(5, dtype=np.float32)}), [(1, _w(1, 2, 3, 4, 5))])


def test_loading_an_older_state_dict_drops_newer_arrays() -> None:
    a = FedAdamSettings().build()
    g = _round(a, _w(0.0, 1.0), [(1, _w(1.0, 2.0))])
    older = a.state_dict()
    _round(a, g, [(1, _w(3.0, -2.0))])
    a.load_state_dict(older)  # the in-memory moments belong to a later round
    with pytest.raises(JobError, match="state arrays were not restored"):
        _round(a, g, [(1, _w(1.0, 1.0))])


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: MomentumOptimizer(lr=0.0), "server_lr must be a finite number > 0"),
        (lambda: MomentumOptimizer(momentum=1.0), r"momentum must be in \[0.0, 1.0\)"),
        (lambda: AdaptiveOptimizer(AdaptiveKind.ADAM, beta1=-0.1), "beta1 must be in"),
        (lambda: AdaptiveOptimizer(AdaptiveKind.ADAM, beta2=0.0), r"beta2 must be in \(0.0"),
        (lambda: AdaptiveOptimizer(AdaptiveKind.YOGI, tau=float("nan")), "tau must be"),
    ],
)
def test_optimizer_validation(make: object, message: str) -> None:
    assert callable(make)
    with pytest.raises(ConfigError, match=message):
        make()


def test_server_optimizer_composes_with_a_robust_rule() -> None:
    # median of deltas [1], [2], [1000] is 2; momentum 0, lr 0.5 -> x = 0.5 * 2 = 1
    s = ServerOptStrategy("median_sgd", MomentumOptimizer(lr=0.5, momentum=0.0), median_rule)
    agg = s.aggregator(_w(0.0), 1)
    assert agg.streaming is False
    for i, v in enumerate([1.0, 2.0, 1000.0]):
        agg.add(Update(f"n{i}", 1, _w(v)))
    np.testing.assert_allclose(agg.result()["w"], [1.0])
