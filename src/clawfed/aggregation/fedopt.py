"""A strategy composed of an aggregation rule and a server optimizer (Reddi et al., ICLR 2021).

The rule (by default the sample-weighted mean of deltas) yields the round's
pseudo-gradient; the server optimizer turns it into the next global weights. FedAvgM,
FedAdam, FedYogi and FedAdagrad are this class with different optimizers; a robust rule
can be used instead of the mean (e.g. ``rule=median_rule``).

State: ``state_dict()`` is small JSON (optimizer kind, step count, digest); the moments
are returned by ``state_arrays()`` for the coordinator to store as safetensors (see
``clawfed.aggregation.state``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from clawfed.aggregation.base import FitInstruction, all_nodes
from clawfed.aggregation.delta import DeltaAggregator, DeltaRule, WeightedMeanDelta
from clawfed.aggregation.optimizers import ServerOptimizer
from clawfed.core import ConfigError, JobError, NodeInfo, Update, Weights


class ServerOptAggregator:
    """Feeds updates to the rule's aggregator; ``result()`` takes one optimizer step.

    The step happens once, on the first call to ``result()``; later calls return the
    same weights without advancing the optimizer again.
    """

    def __init__(
        self, global_weights: Weights, inner: DeltaAggregator, optimizer: ServerOptimizer
    ) -> None:
        self._global = global_weights
        self._inner = inner
        self._optimizer = optimizer
        self._result: Weights | None = None

    @property
    def streaming(self) -> bool:
        return self._inner.streaming

    def add(self, update: Update) -> None:
        if self._result is not None:
            raise JobError("the round was already aggregated; no update can be added")
        self._inner.add(update)

    def count(self) -> int:
        return self._inner.count()

    def delta(self) -> Weights:
        """The pseudo-gradient: the rule's aggregated delta (float64)."""
        return self._inner.delta()

    def result(self) -> Weights:
        if self._result is None:
            self._result = self._optimizer.step(self._global, self._inner.delta())
        return self._result


class ServerOptStrategy:
    """Every node trains; updates are combined by ``rule`` and applied by ``optimizer``."""

    def __init__(
        self, name: str, optimizer: ServerOptimizer, rule: DeltaRule = WeightedMeanDelta
    ) -> None:
        if not name:
            raise ConfigError("strategy name must not be empty")
        self._name = name
        self.optimizer = optimizer
        self._rule = rule

    @property
    def name(self) -> str:
        return self._name

    def configure(self, round_no: int, nodes: Sequence[NodeInfo]) -> list[FitInstruction]:
        del round_no
        return all_nodes(nodes)

    def aggregator(self, global_weights: Weights, round_no: int) -> ServerOptAggregator:
        del round_no
        return ServerOptAggregator(global_weights, self._rule(global_weights), self.optimizer)

    def state_dict(self) -> dict[str, Any]:
        return {"strategy": self._name, "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("strategy") != self._name:
            raise ConfigError(
                f"cannot load state saved by strategy {state.get('strategy')!r} into {self._name!r}"
            )
        opt = state.get("optimizer")
        if not isinstance(opt, Mapping):
            raise ConfigError(f"{self._name}: state 'optimizer' must be a mapping, got {opt!r}")
        self.optimizer.load_state_dict(opt)

    def state_arrays(self) -> Weights:
        """The optimizer's moments (float32), to be saved beside the global model."""
        return self.optimizer.state_arrays()

    def load_state_arrays(self, arrays: Weights) -> None:
        """Restore the optimizer's moments saved by ``state_arrays``."""
        self.optimizer.load_state_arrays(arrays)
