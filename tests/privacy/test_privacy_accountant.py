"""The privacy accountant: calibration never overshoots ε, the budget stops the job in time."""

from __future__ import annotations

import math

import dp_accounting
import pytest
from dp_accounting.rdp import RdpAccountant
from hypothesis import given, settings
from hypothesis import strategies as st

from clawfed.core import ConfigError
from clawfed.privacy import (
    AccountantKind,
    BudgetExceeded,
    PrivacyBudget,
    calibrate_noise,
    epsilon_spent,
)


def _check_calibration(epsilon: float, delta: float, rounds: int, q: float) -> None:
    sigma = calibrate_noise(epsilon, delta, rounds, q)
    budget = PrivacyBudget(epsilon, delta, sigma, q)
    spent = budget.spent(rounds)
    assert spent <= epsilon
    assert spent >= 0.95 * epsilon  # and it is tight: not much more noise than needed
    assert budget.can_run(rounds)
    assert not budget.can_run(rounds + 1)
    with pytest.raises(BudgetExceeded) as info:
        budget.check(rounds + 1)
    assert info.value.next_round == rounds + 1 and info.value.would_spend > epsilon


@settings(max_examples=40, deadline=None)
@given(
    epsilon=st.floats(0.3, 30.0),
    log10_delta=st.floats(-9.0, -3.0),
    rounds=st.integers(1, 300),
)
def test_calibrated_noise_never_exceeds_the_target(
    epsilon: float, log10_delta: float, rounds: int
) -> None:
    _check_calibration(epsilon, 10.0**log10_delta, rounds, 1.0)


@settings(max_examples=4, deadline=None)
@given(
    epsilon=st.floats(0.5, 10.0),
    log10_delta=st.floats(-8.0, -4.0),
    rounds=st.integers(1, 200),
    q=st.sampled_from([0.5, 0.1]),
)
def test_calibrated_noise_never_exceeds_the_target_when_subsampled(
    epsilon: float, log10_delta: float, rounds: int, q: float
) -> None:
    _check_calibration(epsilon, 10.0**log10_delta, rounds, q)


def test_spent_matches_dp_accounting_and_grows_with_rounds() -> None:
    budget = PrivacyBudget(8.0, 1e-5, 1.1)
    acc = RdpAccountant()
    acc.compose(dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(1.1), 10))
    assert budget.spent(10) == acc.get_epsilon(1e-5)
    series = [budget.spent(r) for r in range(0, 20)]
    assert series[0] == 0.0
    assert all(a < b for a, b in zip(series, series[1:], strict=False))


def test_subsampling_amplifies_privacy() -> None:
    assert epsilon_spent(1.0, 1e-5, 50, 0.1) < epsilon_spent(1.0, 1e-5, 50, 1.0)


def test_pld_accountant_is_at_least_as_tight_as_rdp() -> None:
    rdp = epsilon_spent(2.0, 1e-5, 5, 1.0, AccountantKind.RDP)
    pld = epsilon_spent(2.0, 1e-5, 5, 1.0, AccountantKind.PLD)
    assert pld <= rdp * 1.01
    sigma = calibrate_noise(3.0, 1e-5, 5, 1.0, AccountantKind.PLD)
    assert epsilon_spent(sigma, 1e-5, 5, 1.0, AccountantKind.PLD) <= 3.0


def test_max_rounds_finds_the_last_round_within_budget() -> None:
    budget = PrivacyBudget.calibrated(4.0, 1e-5, 37)
    assert budget.max_rounds() == 37
    assert PrivacyBudget(1e-3, 1e-5, 0.5).max_rounds() == 0
    assert PrivacyBudget(1000.0, 1e-5, 50.0).max_rounds(limit=64) == 64
    with pytest.raises(ConfigError):
        budget.max_rounds(limit=0)


def test_budget_exceeded_message_says_what_happened_and_what_to_do() -> None:
    budget = PrivacyBudget.calibrated(2.0, 1e-6, 3)
    with pytest.raises(BudgetExceeded) as info:
        budget.check(4)
    text = str(info.value)
    assert "round 4" in text and "target ε=2" in text and "after round 3" in text


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"target_epsilon": 0.0}, "ε = 0"),
        ({"target_epsilon": -1.0}, "target_epsilon must be > 0"),
        ({"target_epsilon": math.inf}, "finite"),
        ({"target_epsilon": math.nan}, "finite"),
        ({"delta": 0.0}, "0 < δ < 1"),
        ({"delta": 1.0}, "0 < δ < 1"),
        ({"noise_multiplier": 0.0}, "noise_multiplier must be > 0"),
        ({"noise_multiplier": -2.0}, "noise_multiplier must be > 0"),
        ({"sampling_rate": 0.0}, "0 < q <= 1"),
        ({"sampling_rate": 1.5}, "0 < q <= 1"),
        ({"accountant": "moments"}, "accountant must be one of rdp, pld"),
    ],
)
def test_invalid_budgets_are_refused_at_construction(kwargs: dict[str, object], match: str) -> None:
    base: dict[str, object] = {"target_epsilon": 1.0, "delta": 1e-5, "noise_multiplier": 1.0}
    with pytest.raises(ConfigError, match=match):
        PrivacyBudget(**(base | kwargs))  # type: ignore[arg-type]


def test_calibration_inputs_are_validated() -> None:
    with pytest.raises(ConfigError, match="rounds must be >= 1"):
        calibrate_noise(1.0, 1e-5, 0)
    with pytest.raises(ConfigError, match="δ"):
        calibrate_noise(1.0, 0.0, 10)
    with pytest.raises(ConfigError, match="ε = 0"):
        calibrate_noise(0.0, 1e-5, 10)
    with pytest.raises(ConfigError, match="rounds"):
        epsilon_spent(1.0, 1e-5, -1)
