"""Contribution: leave-one-out, exact and GTG-Shapley values, the contribution ledger."""

from __future__ import annotations

import numpy as np
import pytest

from clawfed.aggregation.contribution import (
    ContributionLedger,
    ContributionRecord,
    ShapleySettings,
    SubsetValues,
    Utility,
    evaluate_round,
    exact_shapley,
    fedavg_subset,
    gtg_shapley,
    leave_one_out,
)
from clawfed.core import ConfigError, JobError, Update, Weights


def _w(v: float) -> Weights:
    return Weights({"w": np.asarray([v], dtype=np.float64)})


def _linear(w: Weights) -> float:
    return float(w["w"][0])


def _three() -> list[Update]:
    # deltas 3, 6, 0 with sample counts 1, 1, 2 from a global model at 0
    return [Update("a", 1, _w(3.0)), Update("b", 1, _w(6.0)), Update("c", 2, _w(0.0))]


def test_loo_on_three_nodes_with_a_linear_utility_is_hand_computed() -> None:
    rc = evaluate_round(1, _three(), _linear, aggregate=fedavg_subset(_w(0.0)))
    # v(N) = 9/4 = 2.25; v(N∖a) = 6/3 = 2; v(N∖b) = 3/3 = 1; v(N∖c) = 9/2 = 4.5
    assert rc.v_full == pytest.approx(2.25) and rc.v_empty == 0.0
    assert dict(rc.loo) == pytest.approx({"a": 0.25, "b": 1.25, "c": -2.25})


def test_exact_shapley_on_three_nodes_is_hand_computed() -> None:
    rc = evaluate_round(1, _three(), _linear, aggregate=fedavg_subset(_w(0.0)))
    # v: a=3, b=6, c=0, ab=4.5, ac=1, bc=2, abc=2.25
    # φa = 3/3 + (4.5−6)/6 + (1−0)/6 + (2.25−2)/3 = 1
    # φb = 6/3 + (4.5−3)/6 + (2−0)/6 + (2.25−1)/3 = 3
    # φc = 0/3 + (1−3)/6 + (2−6)/6 + (2.25−4.5)/3 = −1.75
    assert rc.method == "exact" and rc.evaluations == 8
    assert dict(rc.shapley) == pytest.approx({"a": 1.0, "b": 3.0, "c": -1.75})
    assert sum(rc.shapley.values()) == pytest.approx(rc.v_full - rc.v_empty)


def test_gtg_on_three_nodes_approaches_the_exact_values() -> None:
    rc = evaluate_round(
        1,
        _three(),
        _linear,
        aggregate=fedavg_subset(_w(0.0)),
        settings=ShapleySettings(
            allow_exact=False, max_permutations=3000, convergence_tol=0.0, within_tolerance=0.0
        ),
    )
    assert rc.method == "gtg" and rc.permutations == 3000 and not rc.converged
    assert dict(rc.shapley) == pytest.approx({"a": 1.0, "b": 3.0, "c": -1.75}, abs=0.1)


def _game(n: int, seed: int) -> tuple[list[Update], Weights]:
    rng = np.random.default_rng(seed)
    target = rng.normal(size=4)
    ups = [
        Update(f"n{i}", int(rng.integers(1, 50)), Weights({"w": target + rng.normal(size=4) * s}))
        for i, s in enumerate(np.linspace(0.2, 3.0, n))
    ]
    return ups, Weights({"w": np.zeros(4)})


def _dist_utility(target: np.ndarray) -> Utility:
    def u(w: Weights) -> float:
        return -float(np.linalg.norm(w["w"] - target))

    return u


def test_gtg_matches_exact_shapley_on_six_nodes() -> None:
    ups, g = _game(6, 1)
    target = np.random.default_rng(1).normal(size=4)
    u = _dist_utility(target)
    exact = evaluate_round(1, ups, u, aggregate=fedavg_subset(g))
    approx = evaluate_round(
        1,
        ups,
        u,
        aggregate=fedavg_subset(g),
        settings=ShapleySettings(
            allow_exact=False, max_evaluations=64, max_permutations=400, convergence_tol=0.001
        ),
    )
    assert exact.method == "exact" and approx.method == "gtg"
    ex = np.array([exact.shapley[u.node_id] for u in ups])
    ap = np.array([approx.shapley[u.node_id] for u in ups])
    scale = float(np.abs(ex).max())
    assert np.abs(ex - ap).max() <= 0.1 * scale
    # helpful and harmful nodes are told apart, and the worst one is named
    assert list(ex > 0) == list(ap > 0) and int(np.argmin(ex)) == int(np.argmin(ap))


def test_budget_bounds_evaluations_and_the_seed_makes_it_reproducible() -> None:
    ups, g = _game(9, 2)
    u = _dist_utility(np.random.default_rng(2).normal(size=4))
    calls: list[int] = []

    def counted(w: Weights) -> float:
        calls.append(1)
        return u(w)

    cfg = ShapleySettings(max_evaluations=40, seed=5)
    a = evaluate_round(3, ups, counted, aggregate=fedavg_subset(g), settings=cfg)
    assert a.method == "gtg" and a.evaluations <= 40 and len(calls) == a.evaluations
    b = evaluate_round(3, ups, counted, aggregate=fedavg_subset(g), settings=cfg)
    assert dict(a.shapley) == dict(b.shapley)
    with pytest.raises(JobError, match="cannot cover leave-one-out"):
        evaluate_round(
            3, ups, counted, aggregate=fedavg_subset(g), settings=ShapleySettings(max_evaluations=5)
        )


def test_additive_game_gives_shapley_equal_to_loo_and_to_the_worths() -> None:
    worth = [0.5, -1.0, 2.0, 0.0]
    values = SubsetValues(4, lambda s: sum(worth[i] for i in s), 100)
    assert leave_one_out(values) == pytest.approx(worth)
    assert exact_shapley(values) == pytest.approx(worth)
    est = gtg_shapley(values, ShapleySettings(max_permutations=8, within_tolerance=0.0))
    assert list(est.values) == pytest.approx(worth)  # every permutation is exact here


def test_round_without_progress_is_truncated_to_zero() -> None:
    ups, g = _game(12, 3)
    rc = evaluate_round(1, ups, lambda _w: 0.7, aggregate=fedavg_subset(g))
    assert rc.method == "truncated_round"
    assert set(rc.shapley.values()) == {0.0} and set(rc.loo.values()) == {0.0}
    assert rc.evaluations == 2 + 12  # v(∅), v(N) and the 12 leave-one-out subsets


def test_errors_are_specific() -> None:
    with pytest.raises(JobError, match="at least one update"):
        evaluate_round(1, [], _linear, aggregate=fedavg_subset(_w(0.0)))
    dup = [Update("a", 1, _w(1.0)), Update("a", 1, _w(2.0))]
    with pytest.raises(JobError, match="more than once"):
        evaluate_round(1, dup, _linear, aggregate=fedavg_subset(_w(0.0)))
    with pytest.raises(JobError, match="utility returned nan"):
        evaluate_round(1, _three(), lambda _w: float("nan"), aggregate=fedavg_subset(_w(0.0)))
    with pytest.raises(ConfigError, match="max_evaluations"):
        ShapleySettings(max_evaluations=1)


def test_ledger_records_totals_and_history() -> None:
    ledger = ContributionLedger()
    r1 = evaluate_round(1, _three(), _linear, aggregate=fedavg_subset(_w(0.0)))
    rows = ledger.add_round(r1, {"a": "信贷部", "b": "合规部", "c": "审计部"})
    assert rows[0].round_no == 1 and (rows[0].node_id, rows[0].department) == ("a", "信贷部")
    assert (rows[0].loo, rows[0].shapley) == pytest.approx((0.25, 1.0))
    assert all(isinstance(r, ContributionRecord) for r in rows)
    with pytest.raises(JobError, match="already recorded"):
        ledger.add_round(r1)
    r2 = evaluate_round(2, _three(), _linear, aggregate=fedavg_subset(_w(0.0)))
    ledger.add_round(r2)
    totals = ledger.totals()
    assert totals["b"] == pytest.approx((2.5, 6.0))
    # S = φ(round 2) + 0.5·φ(round 1) = 1.5·φ; h = S / mean|S| = φ / ((1 + 3 + 1.75)/3)
    hist = ledger.history(decay=0.5)
    assert hist == pytest.approx(
        {"a": 1.0 / (5.75 / 3), "b": 3.0 / (5.75 / 3), "c": -1.75 / (5.75 / 3)}
    )
    assert ContributionLedger().history() == {}
    with pytest.raises(ConfigError, match="decay"):
        ledger.history(decay=0.0)
    again = ContributionLedger.from_records(ledger.records)
    assert again.totals() == totals


def test_history_discounts_older_rounds() -> None:
    ledger = ContributionLedger.from_records(
        [
            ContributionRecord(1, "a", "", 0.0, 1.0),
            ContributionRecord(1, "b", "", 0.0, 0.0),
            ContributionRecord(2, "a", "", 0.0, 0.0),
            ContributionRecord(2, "b", "", 0.0, 1.0),
        ]
    )
    # S_a = 0.5·1 = 0.5, S_b = 1; mean |S| = 0.75
    assert ledger.history(decay=0.5) == pytest.approx({"a": 0.5 / 0.75, "b": 1.0 / 0.75})
    assert ledger.history(decay=1.0) == pytest.approx({"a": 1.0, "b": 1.0})
