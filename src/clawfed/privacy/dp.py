"""Client-level differential privacy for FedAvg: clipping, Gaussian noise, a strategy wrapper.

McMahan et al., "Learning Differentially Private Recurrent Language Models", ICLR 2018.
Every client's delta is clipped to L2 norm C, so adding or removing one client moves the sum
by at most C; Gaussian noise of std σ·C on the sum then makes each round (ε, δ)-DP with
ε from ``accountant``. Two placements of the noise:

- **central** (``DPFedAvg``): the coordinator sees the updates, clips them and adds
  N(0, σ²C²) to their sum, then divides by the number of updates. The participant count
  is treated as public (the coordinator records it anyway).
- **distributed** (``privatize_update`` on each node, before secure aggregation): each of
  n clients adds N(0, σ²C²/m), where m <= n is the fewest clients whose inputs may be
  summed (the secure-aggregation threshold), so that whoever drops out the sum still
  carries at least σ·C of noise; the coordinator only sees the masked sum and keeps the
  books with ``DPFedAvg(..., mode=NoiseMode.DISTRIBUTED)``.

Noise comes from numpy's PCG64 seeded from the operating system (128 bits of entropy)
unless a generator is given. Floating-point Gaussian sampling is not hardened against the
attacks of Mironov (CCS 2012) on the low bits; use discrete Gaussians where that matters.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from enum import StrEnum
from typing import Any

import numpy as np

from clawfed.aggregation import Aggregator, FitInstruction, Strategy
from clawfed.aggregation.delta import check_update
from clawfed.aggregation.errors import TooFewUpdates
from clawfed.aggregation.state import ArrayStateful
from clawfed.core import ConfigError, NodeInfo, Update, Weights
from clawfed.privacy.accountant import PrivacyBudget, check_positive

#: The node id of the single, already private update the wrapped strategy aggregates.
DP_AGGREGATE_ID = "dp-aggregate"


class NoiseMode(StrEnum):
    """Where the Gaussian noise is added."""

    CENTRAL = "central"
    DISTRIBUTED = "distributed"


def clip_update(delta: Weights, clip_norm: float) -> tuple[Weights, float]:
    """``delta`` scaled to L2 norm at most ``clip_norm`` (float64), and the factor used.

    The factor is ``min(1, C / ||delta||)``; a zero delta is returned unchanged.
    """
    c = check_positive(clip_norm, "clip_norm")
    delta.check_finite()
    norm = delta.l2_norm()
    factor = 1.0 if norm <= c else c / norm
    return delta.map(lambda a: np.asarray(a, dtype=np.float64) * factor), factor


def gaussian_noise(like: Weights, std: float, rng: np.random.Generator) -> Weights:
    """Independent N(0, std²) noise (float64) with the names and shapes of ``like``."""
    if not (math.isfinite(std) and std >= 0):
        raise ConfigError(f"noise std must be a finite number >= 0, got {std!r}")
    return Weights((n, rng.normal(0.0, std, a.shape)) for n, a in like.items())


def client_noise_std(noise_multiplier: float, clip_norm: float, min_clients: int) -> float:
    """Per-client noise std of distributed DP: ``σ·C / sqrt(min_clients)``.

    Any ``min_clients`` or more noised inputs sum to noise of std at least σ·C.
    """
    sigma = check_positive(noise_multiplier, "noise_multiplier")
    c = check_positive(clip_norm, "clip_norm")
    if isinstance(min_clients, bool) or not isinstance(min_clients, int) or min_clients < 1:
        raise ConfigError(f"min_clients must be an int >= 1, got {min_clients!r}")
    return sigma * c / math.sqrt(min_clients)


def privatize_update(
    delta: Weights, clip_norm: float, noise_std: float, rng: np.random.Generator | None = None
) -> Weights:
    """Node side of distributed DP: clip ``delta`` to ``clip_norm`` and add N(0, noise_std²).

    The result keeps each tensor's dtype, ready for ``SecAggClient.mask``.
    """
    clipped, _ = clip_update(delta, clip_norm)
    noise = gaussian_noise(clipped, noise_std, rng if rng is not None else np.random.default_rng())
    out: list[tuple[str, np.ndarray]] = []
    for name, original in delta.items():
        noisy = np.add(clipped[name], noise[name], dtype=np.float64)
        out.append((name, noisy.astype(original.dtype)))
    return Weights(out)


class DPMeanAggregator:
    """Streaming mean of clipped deltas plus Gaussian noise, handed to an inner aggregator.

    Each update is checked, clipped to C (central mode) and summed with weight 1; memory is
    O(model). ``result()`` adds N(0, noise_std²) to the sum once (the result is cached so the
    noise is never drawn twice), divides by the count and gives that mean, as the single
    update of ``DP_AGGREGATE_ID``, to the wrapped strategy's aggregator: whatever the inner
    rule does with it is post-processing and keeps the guarantee.
    """

    streaming = True

    def __init__(
        self,
        global_weights: Weights,
        inner: Aggregator,
        *,
        clip_norm: float | None,
        noise_std: float,
        rng: np.random.Generator,
        on_release: Callable[[], None],
    ) -> None:
        self._global = global_weights
        self._spec = global_weights.spec()
        self._inner = inner
        self._clip = clip_norm
        self._noise_std = noise_std
        self._rng = rng
        self._on_release = on_release
        self._acc = {n: np.zeros(a.shape, dtype=np.float64) for n, a in global_weights.items()}
        self._count = 0
        self._clipped = 0
        self._result: Weights | None = None

    def add(self, update: Update) -> None:
        if self._result is not None:
            raise ConfigError("the DP aggregate was already released; start a new round")
        check_update(update, self._spec)
        delta = update.delta
        if self._clip is not None:
            delta, factor = clip_update(delta, self._clip)
            self._clipped += int(factor < 1.0)
        for name, acc in self._acc.items():
            acc += np.asarray(delta[name], dtype=np.float64)
        self._count += 1

    def count(self) -> int:
        return self._count

    def clipped_count(self) -> int:
        """How many added updates were scaled down to the clipping norm."""
        return self._clipped

    def result(self) -> Weights:
        if self._result is not None:
            return self._result
        if self._count == 0:
            raise TooFewUpdates("dp_fedavg", 1, 0, "the round produced no update")
        total = self._acc
        if self._noise_std > 0:
            noise = gaussian_noise(self._global, self._noise_std, self._rng)
            total = {n: a + np.asarray(noise[n], np.float64) for n, a in self._acc.items()}
        mean = Weights(
            (n, (total[n] / self._count).astype(g.dtype)) for n, g in self._global.items()
        )
        self._inner.add(Update(DP_AGGREGATE_ID, 1, mean))
        self._result = self._inner.result()
        self._on_release()
        return self._result


class DPFedAvg:
    """Wraps a strategy with client-level DP-FedAvg and stops before the budget runs out.

    Parameters
    ----------
    inner
        The strategy whose node selection and server update are kept (FedAvg, FedAdam,
        FedAvgM…). It aggregates one update per round: the already private mean.
    clip_norm
        C: the L2 bound on each client's delta.
    budget
        Target (ε, δ), noise multiplier σ and sampling rate; ``configure`` and
        ``aggregator`` raise ``BudgetExceeded`` before a round that would overspend.
    mode
        ``CENTRAL``: clip here and add N(0, σ²C²) to the sum. ``DISTRIBUTED``: the nodes
        clipped and noised (``privatize_update``) and the sum arrives through secure
        aggregation; this side only adds the updates up and keeps the books.
    rng
        Noise source (tests); by default seeded from the operating system.
    """

    def __init__(
        self,
        inner: Strategy,
        *,
        clip_norm: float,
        budget: PrivacyBudget,
        mode: NoiseMode = NoiseMode.CENTRAL,
        rng: np.random.Generator | None = None,
    ) -> None:
        self._inner = inner
        self.clip_norm = check_positive(clip_norm, "clip_norm")
        self.budget = budget
        try:
            self.mode = NoiseMode(mode)
        except ValueError:
            raise ConfigError(f"mode must be central or distributed, got {mode!r}") from None
        self._rng = rng if rng is not None else np.random.default_rng()
        self.rounds_done = 0

    @property
    def name(self) -> str:
        return f"dp_fedavg({self._inner.name})"

    @property
    def epsilon(self) -> float:
        """ε spent by the rounds released so far."""
        return self.budget.spent(self.rounds_done)

    def configure(self, round_no: int, nodes: Sequence[NodeInfo]) -> list[FitInstruction]:
        self.budget.check(self.rounds_done + 1)
        return self._inner.configure(round_no, nodes)

    def aggregator(self, global_weights: Weights, round_no: int) -> DPMeanAggregator:
        self.budget.check(self.rounds_done + 1)
        central = self.mode is NoiseMode.CENTRAL
        return DPMeanAggregator(
            global_weights,
            self._inner.aggregator(global_weights, round_no),
            clip_norm=self.clip_norm if central else None,
            noise_std=self.budget.noise_multiplier * self.clip_norm if central else 0.0,
            rng=self._rng,
            on_release=self._released,
        )

    def _released(self) -> None:
        self.rounds_done += 1

    def state_dict(self) -> dict[str, Any]:
        b = self.budget
        return {
            "inner": self._inner.state_dict(),
            "dp": {
                "rounds": self.rounds_done,
                "epsilon": self.epsilon,
                "delta": b.delta,
                "target_epsilon": b.target_epsilon,
                "noise_multiplier": b.noise_multiplier,
                "sampling_rate": b.sampling_rate,
                "clip_norm": self.clip_norm,
                "mode": self.mode.value,
                "accountant": b.accountant.value,
            },
        }

    def state_arrays(self) -> Weights:
        """The wrapped strategy's model-sized state (e.g. FedAdam moments); empty if none."""
        if isinstance(self._inner, ArrayStateful):
            return self._inner.state_arrays()
        return Weights()

    def load_state_arrays(self, arrays: Weights) -> None:
        """Give ``arrays`` back to the wrapped strategy."""
        if isinstance(self._inner, ArrayStateful):
            self._inner.load_state_arrays(arrays)
        elif len(arrays) > 0:
            raise ConfigError(
                f"{self.name}: the wrapped strategy keeps no state arrays, got {list(arrays)}"
            )

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if not state:  # a fresh job: nothing spent yet
            self.rounds_done = 0
            return
        dp = state.get("dp")
        inner = state.get("inner")
        if not isinstance(dp, Mapping) or not isinstance(inner, Mapping):
            raise ConfigError(
                f"{self.name}: state must hold 'inner' and 'dp' mappings, got {sorted(state)}"
            )
        rounds = dp.get("rounds")
        if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 0:
            raise ConfigError(f"{self.name}: state 'dp.rounds' must be an int >= 0, got {rounds!r}")
        b = self.budget
        mine = {
            "delta": b.delta,
            "noise_multiplier": b.noise_multiplier,
            "sampling_rate": b.sampling_rate,
            "clip_norm": self.clip_norm,
        }
        for key, value in mine.items():
            if dp.get(key) != value:
                raise ConfigError(
                    f"{self.name}: the saved state used {key}={dp.get(key)!r}, this job uses "
                    f"{value!r}; privacy spent under other parameters cannot be carried over"
                )
        self._inner.load_state_dict(inner)
        self.rounds_done = rounds
