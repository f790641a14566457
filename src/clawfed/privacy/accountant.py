"""Privacy accounting for DP-FedAvg rounds through Google's ``dp_accounting`` library.

Each round releases one (Poisson-subsampled, when ``sampling_rate`` < 1) Gaussian mechanism
with noise multiplier σ; ``rounds`` rounds are its ``rounds``-fold self-composition. The
ε at a given δ comes from the Rényi-DP accountant (Mironov, CSF 2017) by default, or from
the tighter but slower privacy-loss-distribution accountant (Koskela et al., AISTATS 2020;
Doroshenko et al., PETS 2022). clawfed does not compute ε itself.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import cache

import dp_accounting
from dp_accounting.pld import PLDAccountant
from dp_accounting.rdp import RdpAccountant

from clawfed.core import ConfigError
from clawfed.privacy.errors import BudgetExceeded

# With subsampling (q < 1) integer Rényi orders only: the fractional-order series of
# dp_accounting fails to converge for some (q, σ) and logs a warning per order. Leaving
# orders out can only overstate ε, never understate it. Without subsampling the library's
# default orders are used (closed form, no series).
_SUBSAMPLED_ORDERS = [float(a) for a in [*range(2, 65), 72, 80, 96, 112, 128, 160, 192, 256]]
_PLD_DISCRETIZATION = 1e-3
_MIN_SIGMA = 1e-3


class AccountantKind(StrEnum):
    """Which ``dp_accounting`` accountant computes ε."""

    RDP = "rdp"
    PLD = "pld"


def check_epsilon(value: float, name: str = "target_epsilon") -> float:
    """``value`` as a float after checking it is a finite number > 0."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number > 0, got {value!r}")
    if value <= 0:
        raise ConfigError(f"{name} must be > 0 (ε = 0 would allow no release at all), got {value}")
    return float(value)


def check_delta(value: float) -> float:
    """``value`` as a float after checking ``0 < δ < 1``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
        raise ConfigError(f"delta must be a number with 0 < δ < 1, got {value!r}")
    return float(value)


def check_positive(value: float, name: str) -> float:
    """``value`` as a float after checking it is a finite number > 0."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number > 0, got {value!r}")
    if value <= 0:
        raise ConfigError(f"{name} must be > 0, got {value}")
    return float(value)


def check_sampling_rate(value: float) -> float:
    """``value`` as a float after checking ``0 < q <= 1``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise ConfigError(f"sampling_rate must be a number with 0 < q <= 1, got {value!r}")
    return float(value)


def check_rounds(value: int, name: str = "rounds") -> int:
    """``value`` after checking it is an int >= 0."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{name} must be an int >= 0, got {value!r}")
    return value


def check_accountant(value: AccountantKind | str) -> AccountantKind:
    """``value`` as an ``AccountantKind``; ``ConfigError`` naming the known kinds otherwise."""
    try:
        return AccountantKind(value)
    except ValueError:
        known = ", ".join(k.value for k in AccountantKind)
        raise ConfigError(f"accountant must be one of {known}, got {value!r}") from None


def _event(noise_multiplier: float, sampling_rate: float, rounds: int) -> dp_accounting.DpEvent:
    step: dp_accounting.DpEvent = dp_accounting.GaussianDpEvent(noise_multiplier)
    if sampling_rate < 1.0:
        step = dp_accounting.PoissonSampledDpEvent(sampling_rate, step)
    return dp_accounting.SelfComposedDpEvent(step, rounds)


def _accountant(kind: AccountantKind, sampling_rate: float) -> dp_accounting.PrivacyAccountant:
    if kind is AccountantKind.PLD:
        return PLDAccountant(value_discretization_interval=_PLD_DISCRETIZATION)
    if sampling_rate == 1.0:
        return RdpAccountant()
    return RdpAccountant(orders=_SUBSAMPLED_ORDERS)


@cache
def _epsilon(
    noise_multiplier: float, sampling_rate: float, rounds: int, delta: float, kind: AccountantKind
) -> float:
    acc = _accountant(kind, sampling_rate)
    acc.compose(_event(noise_multiplier, sampling_rate, rounds))
    return float(acc.get_epsilon(delta))


def epsilon_spent(
    noise_multiplier: float,
    delta: float,
    rounds: int,
    sampling_rate: float = 1.0,
    accountant: AccountantKind = AccountantKind.RDP,
) -> float:
    """ε spent by ``rounds`` Gaussian releases with ``noise_multiplier`` at ``delta``."""
    sigma = check_positive(noise_multiplier, "noise_multiplier")
    d = check_delta(delta)
    q = check_sampling_rate(sampling_rate)
    r = check_rounds(rounds)
    if r == 0:
        return 0.0
    return _epsilon(sigma, q, r, d, check_accountant(accountant))


def epsilon_of_steps(
    history: Sequence[tuple[float, float, int]],
    delta: float,
    accountant: AccountantKind = AccountantKind.RDP,
) -> float:
    """ε at ``delta`` of a sequence of ``(noise_multiplier, sampling_rate, steps)`` phases.

    This is the shape of Opacus's accountant history, so DP-SGD on a node is accounted by
    the same library as DP-FedAvg on the coordinator.
    """
    d = check_delta(delta)
    kind = check_accountant(accountant)
    phases = [
        (check_positive(s, "noise_multiplier"), check_sampling_rate(q), check_rounds(n, "steps"))
        for s, q, n in history
    ]
    phases = [p for p in phases if p[2] > 0]
    if not phases:
        return 0.0
    if len(phases) == 1:
        return _epsilon(*phases[0], d, kind)
    acc = _accountant(kind, min(q for _, q, _ in phases))
    acc.compose(dp_accounting.ComposedDpEvent([_event(s, q, n) for s, q, n in phases]))
    return float(acc.get_epsilon(d))


def calibrate_noise(
    target_epsilon: float,
    delta: float,
    rounds: int,
    sampling_rate: float = 1.0,
    accountant: AccountantKind = AccountantKind.RDP,
) -> float:
    """The smallest noise multiplier σ (within 1e-6) whose ``rounds`` rounds stay within ε.

    Uses ``dp_accounting.calibrate_dp_mechanism``, which guarantees the returned σ spends
    at most ``target_epsilon``; ``epsilon_spent`` with the same arguments agrees.

    Raises
    ------
    ConfigError
        For ε <= 0, δ outside (0, 1), ``rounds`` < 1 or ``sampling_rate`` outside (0, 1].
    """
    eps = check_epsilon(target_epsilon)
    d = check_delta(delta)
    q = check_sampling_rate(sampling_rate)
    r = check_rounds(rounds)
    if r < 1:
        raise ConfigError(f"rounds must be >= 1 to calibrate noise, got {rounds}")
    return _calibrate(eps, d, r, q, check_accountant(accountant))


@cache
def _calibrate(eps: float, d: float, r: int, q: float, kind: AccountantKind) -> float:
    bracket: dp_accounting.mechanism_calibration.BracketInterval
    if kind is AccountantKind.RDP:
        bracket = dp_accounting.LowerEndpointAndGuess(_MIN_SIGMA, 1.0)
    else:
        # PLD is at least as tight as RDP, so the RDP answer bounds σ from above; a very
        # small σ would make the PLD discretization enormous, so search just below it.
        upper = _calibrate(eps, d, r, q, AccountantKind.RDP)
        lower = upper / 2
        while lower > _MIN_SIGMA and _epsilon(lower, q, r, d, kind) <= eps:
            lower /= 2
        bracket = dp_accounting.ExplicitBracketInterval(lower, upper)
    sigma = dp_accounting.calibrate_dp_mechanism(
        lambda: _accountant(kind, q), lambda s: _event(s, q, r), eps, d, bracket_interval=bracket
    )
    return float(sigma)


@dataclass(frozen=True)
class PrivacyBudget:
    """A job's (ε, δ) target and the mechanism that spends it round by round.

    Attributes
    ----------
    target_epsilon
        The most ε the whole job may spend; > 0 and finite.
    delta
        The δ at which ε is measured, ``0 < δ < 1`` (choose ≪ 1 / number of clients).
    noise_multiplier
        σ: the Gaussian noise std divided by the clipping norm.
    sampling_rate
        Probability that a client takes part in a round (1 when all do).
    accountant
        RDP (default, fast) or PLD (tighter, slower).
    """

    target_epsilon: float
    delta: float
    noise_multiplier: float
    sampling_rate: float = 1.0
    accountant: AccountantKind = AccountantKind.RDP

    def __post_init__(self) -> None:
        object.__setattr__(self, "target_epsilon", check_epsilon(self.target_epsilon))
        object.__setattr__(self, "delta", check_delta(self.delta))
        object.__setattr__(
            self, "noise_multiplier", check_positive(self.noise_multiplier, "noise_multiplier")
        )
        object.__setattr__(self, "sampling_rate", check_sampling_rate(self.sampling_rate))
        object.__setattr__(self, "accountant", check_accountant(self.accountant))

    @classmethod
    def calibrated(
        cls,
        target_epsilon: float,
        delta: float,
        rounds: int,
        sampling_rate: float = 1.0,
        accountant: AccountantKind = AccountantKind.RDP,
    ) -> PrivacyBudget:
        """The budget whose σ lets exactly ``rounds`` rounds fit within ``target_epsilon``."""
        sigma = calibrate_noise(target_epsilon, delta, rounds, sampling_rate, accountant)
        return cls(target_epsilon, delta, sigma, sampling_rate, accountant)

    def spent(self, rounds: int) -> float:
        """ε spent after ``rounds`` completed rounds (0.0 for none)."""
        return epsilon_spent(
            self.noise_multiplier, self.delta, rounds, self.sampling_rate, self.accountant
        )

    def can_run(self, next_round: int) -> bool:
        """Whether round ``next_round`` (1-based) keeps the total within the target."""
        check_rounds(next_round, "next_round")
        return self.spent(next_round) <= self.target_epsilon

    def check(self, next_round: int) -> None:
        """Raise ``BudgetExceeded`` unless round ``next_round`` fits the budget."""
        if not self.can_run(next_round):
            raise BudgetExceeded(
                next_round=next_round,
                would_spend=self.spent(next_round),
                target_epsilon=self.target_epsilon,
                delta=self.delta,
            )

    def max_rounds(self, limit: int = 100_000) -> int:
        """The most rounds that fit the budget (searched up to ``limit`` >= 1)."""
        if check_rounds(limit, "limit") < 1:
            raise ConfigError(f"limit must be >= 1, got {limit}")
        if not self.can_run(1):
            return 0
        good = 1
        while good < limit and self.can_run(min(good * 2, limit)):
            good = min(good * 2, limit)
        if good == limit:
            return limit
        bad = min(good * 2, limit)
        while bad - good > 1:  # can_run(good) holds, can_run(bad) does not
            mid = (good + bad) // 2
            if self.can_run(mid):
                good = mid
            else:
                bad = mid
        return good
