"""FedAvgM: FedAvg with server momentum (Hsu et al., 2019; Reddi et al., ICLR 2021)."""

from __future__ import annotations

from pydantic import Field

from clawfed.aggregation.fedopt import ServerOptStrategy
from clawfed.aggregation.optimizers import MomentumOptimizer
from clawfed.aggregation.settings import StrategySettings


class FedAvgMSettings(StrategySettings):
    """``server_lr`` η > 0 and ``momentum`` μ in [0, 1); μ = 0, η = 1 is FedAvg.

    The defaults give an effective step η / (1 − μ) = 1, FedAvg's (Hsu et al., §3).
    """

    server_lr: float = Field(default=0.1, gt=0.0)
    momentum: float = Field(default=0.9, ge=0.0, lt=1.0)

    def build(self) -> ServerOptStrategy:
        return ServerOptStrategy(
            "fedavgm", MomentumOptimizer(lr=self.server_lr, momentum=self.momentum)
        )
