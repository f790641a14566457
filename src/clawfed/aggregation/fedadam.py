"""FedAdam: Adam as the server optimizer (Reddi et al., "Adaptive Federated Optimization")."""

from __future__ import annotations

from pydantic import Field

from clawfed.aggregation.fedopt import ServerOptStrategy
from clawfed.aggregation.optimizers import AdaptiveKind, AdaptiveOptimizer
from clawfed.aggregation.settings import StrategySettings


class FedAdamSettings(StrategySettings):
    """Server learning rate η, moment decays β₁ ∈ [0, 1) and β₂ ∈ (0, 1), adaptivity τ > 0."""

    server_lr: float = Field(default=0.01, gt=0.0)
    beta1: float = Field(default=0.9, ge=0.0, lt=1.0)
    beta2: float = Field(default=0.99, gt=0.0, lt=1.0)
    tau: float = Field(default=1e-3, gt=0.0)

    def build(self) -> ServerOptStrategy:
        opt = AdaptiveOptimizer(
            AdaptiveKind.ADAM, lr=self.server_lr, beta1=self.beta1, beta2=self.beta2, tau=self.tau
        )
        return ServerOptStrategy("fedadam", opt)
