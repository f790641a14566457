"""FedProx (Li et al., MLSys 2020): FedAvg on the server, a proximal term on the nodes.

Each node minimises ``loss(w) + (μ/2)·‖w − w_global‖²``; the coordinator only tells it
μ through the ``proximal_mu`` key of the fit config, and aggregates like FedAvg.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from pydantic import Field

from clawfed.aggregation.base import FitInstruction
from clawfed.aggregation.delta import WeightedMeanDelta
from clawfed.aggregation.settings import StrategySettings
from clawfed.aggregation.state import require_empty_state
from clawfed.core import ConfigError, NodeInfo, Weights

#: Fit-config key a node's training loop reads the proximal coefficient μ from.
PROXIMAL_MU_KEY = "proximal_mu"


class FedProx:
    """Every node trains with the proximal coefficient ``proximal_mu``; sample-weighted mean."""

    name = "fedprox"

    def __init__(self, proximal_mu: float = 0.01) -> None:
        if not (math.isfinite(proximal_mu) and proximal_mu > 0.0):
            raise ConfigError(f"proximal_mu must be a finite number > 0, got {proximal_mu!r}")
        self.proximal_mu = float(proximal_mu)

    def configure(self, round_no: int, nodes: Sequence[NodeInfo]) -> list[FitInstruction]:
        del round_no
        config = MappingProxyType({PROXIMAL_MU_KEY: self.proximal_mu})
        return [FitInstruction(n.node_id, config) for n in nodes]

    def aggregator(self, global_weights: Weights, round_no: int) -> WeightedMeanDelta:
        del round_no
        return WeightedMeanDelta(global_weights)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        require_empty_state(self.name, state)


class FedProxSettings(StrategySettings):
    """``proximal_mu`` μ > 0: weight of the proximal term on the nodes."""

    proximal_mu: float = Field(default=0.01, gt=0.0)

    def build(self) -> FedProx:
        return FedProx(self.proximal_mu)
