"""Client-level DP-FedAvg: clipping, noise of the right size, budget stops, state round trip."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from clawfed.aggregation import FedAvg, build_strategy
from clawfed.core import ConfigError, NodeInfo, Update, UpdateRejected, Weights
from clawfed.privacy import (
    DP_AGGREGATE_ID,
    BudgetExceeded,
    DPFedAvg,
    NoiseMode,
    PrivacyBudget,
    client_noise_std,
    clip_update,
    privatize_update,
)

GLOBAL = Weights({"w": np.zeros((4, 3), np.float32), "b": np.ones(2, np.float32)})
NODES = [NodeInfo(f"n{i}", f"dept{i}") for i in range(3)]


def _delta(values: float | np.ndarray) -> Weights:
    w = np.broadcast_to(np.asarray(values, np.float32), (4, 3)).copy()
    return Weights({"w": w, "b": np.full(2, float(np.mean(values)), np.float32)})


@settings(max_examples=80, deadline=None)
@given(
    a=arrays(np.float64, st.integers(1, 40), elements=st.floats(-1e6, 1e6)),
    clip=st.floats(1e-3, 1e3),
)
def test_clipping_bounds_the_norm_and_keeps_the_direction(a: np.ndarray, clip: float) -> None:
    clipped, factor = clip_update(Weights({"x": a}), clip)
    norm = float(np.linalg.norm(a))
    assert clipped.l2_norm() <= clip * (1 + 1e-9)
    assert 0.0 < factor <= 1.0
    if norm <= clip:
        assert factor == 1.0 and np.array_equal(clipped["x"], a)
    else:
        assert np.allclose(clipped["x"], a * (clip / norm))


def test_central_dp_adds_the_calibrated_noise_to_the_clipped_mean() -> None:
    budget = PrivacyBudget(8.0, 1e-5, noise_multiplier=0.7)
    dp = DPFedAvg(FedAvg(), clip_norm=1.0, budget=budget, rng=np.random.default_rng(5))
    agg = dp.aggregator(GLOBAL, 1)
    updates = [_delta(10.0), _delta(-0.01), _delta(0.2)]
    for i, d in enumerate(updates):
        agg.add(Update(f"n{i}", 100 * (i + 1), d))  # sample counts do not weight DP-FedAvg
    assert agg.clipped_count() == 1
    got = agg.result()
    clipped = [clip_update(d, 1.0)[0] for d in updates]
    noise_rng = np.random.default_rng(5)
    for name, g in GLOBAL.items():
        noise = noise_rng.normal(0.0, 0.7 * 1.0, g.shape)
        want = g + (sum(np.asarray(c[name]) for c in clipped) + noise) / 3
        assert np.allclose(got[name], want.astype(np.float32), atol=1e-6)
    assert agg.result() is got  # cached: the noise is drawn once per round
    assert dp.rounds_done == 1


def test_noise_std_on_the_mean_is_sigma_c_over_n() -> None:
    big = Weights({"w": np.zeros(200_000, np.float64)})
    budget = PrivacyBudget(8.0, 1e-5, noise_multiplier=1.3)
    dp = DPFedAvg(FedAvg(), clip_norm=0.5, budget=budget, rng=np.random.default_rng(1))
    agg = dp.aggregator(big, 1)
    for i in range(4):
        agg.add(Update(f"n{i}", 1, Weights({"w": np.zeros(200_000)})))
    std = float(np.std(agg.result()["w"]))
    assert std == pytest.approx(1.3 * 0.5 / 4, rel=0.01)


def test_budget_stops_the_job_before_it_is_exceeded_and_records_epsilon() -> None:
    budget = PrivacyBudget.calibrated(2.0, 1e-5, rounds=3)
    dp = DPFedAvg(FedAvg(), clip_norm=1.0, budget=budget, rng=np.random.default_rng(0))
    spent = []
    for round_no in (1, 2, 3):
        assert [i.node_id for i in dp.configure(round_no, NODES)] == ["n0", "n1", "n2"]
        agg = dp.aggregator(GLOBAL, round_no)
        agg.add(Update("n0", 1, _delta(0.1)))
        agg.result()
        spent.append(dp.state_dict()["dp"]["epsilon"])
    assert spent == sorted(spent) and spent[-1] <= 2.0
    assert dp.state_dict()["dp"]["rounds"] == 3
    with pytest.raises(BudgetExceeded, match="round 4"):
        dp.configure(4, NODES)
    with pytest.raises(BudgetExceeded):
        dp.aggregator(GLOBAL, 4)


def test_a_round_that_never_released_costs_nothing() -> None:
    budget = PrivacyBudget(1.0, 1e-5, 5.0)
    dp = DPFedAvg(FedAvg(), clip_norm=1.0, budget=budget)
    agg = dp.aggregator(GLOBAL, 1)
    agg.add(Update("n0", 1, _delta(0.1)))  # the round fails before result()
    assert dp.rounds_done == 0 and dp.epsilon == 0.0


def test_state_round_trip_and_refusal_of_other_parameters() -> None:
    budget = PrivacyBudget(4.0, 1e-5, 1.5)
    dp = DPFedAvg(build_strategy("fedadam", {}), clip_norm=1.0, budget=budget)
    agg = dp.aggregator(GLOBAL, 1)
    agg.add(Update("n0", 1, _delta(0.1)))
    agg.result()
    state = dp.state_dict()
    arrays_ = dp.state_arrays()
    assert len(arrays_) > 0  # FedAdam's moments pass through the wrapper
    again = DPFedAvg(build_strategy("fedadam", {}), clip_norm=1.0, budget=budget)
    again.load_state_dict(state)
    again.load_state_arrays(arrays_)
    assert again.rounds_done == 1 and again.epsilon == pytest.approx(dp.epsilon)
    other = DPFedAvg(
        build_strategy("fedadam", {}), clip_norm=1.0, budget=PrivacyBudget(4.0, 1e-5, 2.0)
    )
    with pytest.raises(ConfigError, match="noise_multiplier"):
        other.load_state_dict(state)
    with pytest.raises(ConfigError, match="'inner' and 'dp'"):
        again.load_state_dict({"rounds": 3})
    fresh = DPFedAvg(FedAvg(), clip_norm=1.0, budget=budget)
    fresh.load_state_dict({})
    assert fresh.rounds_done == 0
    with pytest.raises(ConfigError, match="no state arrays"):
        fresh.load_state_arrays(arrays_)


def test_wrapped_server_optimizer_sees_one_private_update() -> None:
    dp = DPFedAvg(
        build_strategy("fedavgm", {"server_lr": 1.0, "momentum": 0.0}),
        clip_norm=10.0,
        budget=PrivacyBudget(1e12, 1e-5, 1e-5),  # hardly any noise: compare with the plain mean
    )
    assert dp.name == "dp_fedavg(fedavgm)"
    agg = dp.aggregator(GLOBAL, 1)
    agg.add(Update("n0", 5, _delta(0.1)))
    agg.add(Update("n1", 50, _delta(0.3)))
    out = agg.result()
    assert np.allclose(out["w"], 0.2, atol=5e-3) and np.allclose(out["b"], 1.2, atol=5e-3)
    assert DP_AGGREGATE_ID == "dp-aggregate"


def test_bad_updates_and_settings_are_refused() -> None:
    dp = DPFedAvg(FedAvg(), clip_norm=1.0, budget=PrivacyBudget(1.0, 1e-5, 5.0))
    agg = dp.aggregator(GLOBAL, 1)
    bad = Weights({"w": np.full((4, 3), np.nan, np.float32), "b": np.zeros(2, np.float32)})
    with pytest.raises(UpdateRejected):
        agg.add(Update("n0", 1, bad))
    with pytest.raises(ConfigError, match="clip_norm must be > 0"):
        DPFedAvg(FedAvg(), clip_norm=0.0, budget=PrivacyBudget(1.0, 1e-5, 1.0))
    with pytest.raises(ConfigError, match="mode"):
        DPFedAvg(FedAvg(), clip_norm=1.0, budget=PrivacyBudget(1.0, 1e-5, 1.0), mode="local")  # type: ignore[arg-type]
    agg.add(Update("n0", 1, _delta(0.1)))
    agg.result()
    with pytest.raises(ConfigError, match="already released"):
        agg.add(Update("n1", 1, _delta(0.1)))


def test_distributed_noise_sums_to_at_least_sigma_c() -> None:
    sigma, clip, m = 1.2, 0.8, 5
    std = client_noise_std(sigma, clip, m)
    assert std == pytest.approx(sigma * clip / np.sqrt(m))
    rng = np.random.default_rng(3)
    zero = Weights({"w": np.zeros(100_000, np.float64)})
    total = sum(np.asarray(privatize_update(zero, clip, std, rng)["w"]) for _ in range(m))
    assert float(np.std(total)) == pytest.approx(sigma * clip, rel=0.02)
    noisy = privatize_update(Weights({"w": np.full(4, 100.0, np.float32)}), clip, 0.0, rng)
    assert noisy["w"].dtype == np.float32 and float(np.linalg.norm(noisy["w"])) <= clip + 1e-6
    with pytest.raises(ConfigError):
        client_noise_std(sigma, clip, 0)


def test_distributed_mode_only_keeps_the_books() -> None:
    budget = PrivacyBudget(8.0, 1e-5, 1.0)
    dp = DPFedAvg(FedAvg(), clip_norm=1.0, budget=budget, mode=NoiseMode.DISTRIBUTED)
    agg = dp.aggregator(GLOBAL, 1)
    agg.add(Update("secagg", 1, _delta(5.0)))  # already noised and summed by the nodes
    out = agg.result()
    assert np.allclose(out["w"], 5.0) and dp.rounds_done == 1
    assert dp.state_dict()["dp"]["mode"] == "distributed"
