"""Pure update rules of server optimizers (Reddi et al., "Adaptive Federated Optimization").

ICLR 2021, Algorithm 2.

All functions take and return float64 arrays and never modify their inputs. ``g`` is
the pseudo-gradient of a round: the aggregated delta (local − global), so a step *adds*
a multiple of it. Reddi et al. state the rules without bias correction; so do we.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]


def momentum_step(x: F64, v: F64, g: F64, *, lr: float, momentum: float) -> tuple[F64, F64]:
    """FedAvgM (Hsu et al., 2019): ``v' = momentum·v + g``, ``x' = x + lr·v'``.

    Returns ``(x', v')``. With ``momentum = 0`` and ``lr = 1`` this is FedAvg.
    """
    v_new = momentum * v + g
    return x + lr * v_new, v_new


def first_moment(m: F64, g: F64, *, beta1: float) -> F64:
    """``m' = beta1·m + (1 − beta1)·g`` (Reddi et al., Alg. 2)."""
    return beta1 * m + (1.0 - beta1) * g


def adagrad_second_moment(v: F64, g: F64) -> F64:
    """FedAdagrad: ``v' = v + g²``."""
    return v + g * g


def adam_second_moment(v: F64, g: F64, *, beta2: float) -> F64:
    """FedAdam: ``v' = beta2·v + (1 − beta2)·g²``."""
    return beta2 * v + (1.0 - beta2) * g * g


def yogi_second_moment(v: F64, g: F64, *, beta2: float) -> F64:
    """FedYogi: ``v' = v − (1 − beta2)·g²·sign(v − g²)``."""
    g2 = g * g
    return v - (1.0 - beta2) * g2 * np.sign(v - g2)


def adaptive_step(x: F64, m: F64, v: F64, *, lr: float, tau: float) -> F64:
    """``x' = x + lr·m / (sqrt(v) + tau)``; ``tau`` bounds the per-coordinate step."""
    return x + lr * m / (np.sqrt(np.maximum(v, 0.0)) + tau)
