"""FedAvg (McMahan et al., AISTATS 2017): the sample-weighted mean of node updates."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np

from clawfed.aggregation.base import Aggregator, FitInstruction, all_nodes
from clawfed.core import NodeInfo, Update, Weights
from clawfed.core.buffers import shared_pool

_BLOCK = 1 << 18  # elements per block when folding: float64 temporaries of 2 MiB (cache-sized)


def axpy(acc: np.ndarray, x: np.ndarray, alpha: float) -> None:
    """``acc += alpha * x`` in place, blockwise so no full-size temporary is made."""
    flat_acc = acc.reshape(-1)
    flat_x = x.reshape(-1)
    tmp = np.empty(min(_BLOCK, flat_x.size), dtype=acc.dtype)
    for start in range(0, flat_x.size, _BLOCK):
        stop = min(start + _BLOCK, flat_x.size)
        t = tmp[: stop - start]
        np.multiply(flat_x[start:stop], alpha, out=t, casting="unsafe")
        flat_acc[start:stop] += t


def add_scaled_into(out: np.ndarray, g: np.ndarray, acc: np.ndarray, alpha: float) -> None:
    """``out = g + alpha * acc`` computed in float64 and cast to ``out``'s dtype, blockwise.

    Equal to ``(g.astype(float64) + alpha * acc).astype(out.dtype)`` element for element,
    without the two full-size float64 temporaries (for a 10M-parameter model, 160 MB).
    """
    flat_out = out.reshape(-1)
    flat_g = g.reshape(-1)
    flat_acc = acc.reshape(-1)
    n = flat_out.size
    tmp = np.empty(min(_BLOCK, n), dtype=np.float64)
    scaled = np.empty_like(tmp)
    for start in range(0, n, _BLOCK):
        stop = min(start + _BLOCK, n)
        t = tmp[: stop - start]
        s = scaled[: stop - start]
        t[...] = flat_g[start:stop]
        np.multiply(flat_acc[start:stop], alpha, out=s)
        t += s
        flat_out[start:stop] = t


class WeightedMeanAggregator:
    """Streaming weighted mean of update deltas, added to the global weights at the end.

    Memory is one accumulator the size of the model, however many updates arrive: float64
    by default; with ``precision="model"`` each tensor accumulates in its own float type
    (float32 for a float32 model, half the memory; float64 for float64 tensors and for
    integer ones), which is what FedAvg uses. The weight of an update is its sample count
    unless ``weight_of`` says otherwise. The result's large arrays come from the shared
    ``BufferPool``, so a round reuses the buffer of an update already folded in.
    """

    streaming = True

    def __init__(
        self,
        global_weights: Weights,
        weight_of: Callable[[Update], float] | None = None,
        *,
        precision: Literal["float64", "model"] = "float64",
    ) -> None:
        self._global = global_weights

        def acc_dtype(a: np.ndarray) -> np.dtype[Any]:
            if precision == "float64" or a.dtype.kind != "f":
                return np.dtype(np.float64)
            return np.promote_types(a.dtype, np.float32)

        self._acc = {n: np.zeros(a.shape, dtype=acc_dtype(a)) for n, a in global_weights.items()}
        self._total = 0.0
        self._count = 0
        self._weight_of = weight_of

    def add(self, update: Update) -> None:
        w = float(update.num_samples if self._weight_of is None else self._weight_of(update))
        if not w > 0.0:
            raise ValueError(f"aggregation weight of {update.node_id} must be > 0, got {w}")
        for name, acc in self._acc.items():
            axpy(acc, update.delta[name], w)
        self._total += w
        self._count += 1

    def count(self) -> int:
        return self._count

    def total_weight(self) -> float:
        """Sum of the weights of the updates added so far."""
        return self._total

    def mean_delta(self) -> Weights:
        """The weighted mean delta, in the accumulator's precision."""
        if self._count == 0:
            raise ValueError("no update was added; cannot aggregate an empty round")
        return Weights((n, np.asarray(a / self._total)) for n, a in self._acc.items())

    def result(self) -> Weights:
        if self._count == 0:
            raise ValueError("no update was added; cannot aggregate an empty round")
        out: list[tuple[str, np.ndarray]] = []
        for name, g in self._global.items():
            new = shared_pool().take(g.nbytes).view(g.dtype).reshape(g.shape)
            add_scaled_into(new, g, self._acc[name], 1.0 / self._total)
            out.append((name, new))
        return Weights(out)


class FedAvg:
    """Every node trains each round; the new model is the sample-weighted mean."""

    name = "fedavg"

    def configure(self, round_no: int, nodes: Sequence[NodeInfo]) -> list[FitInstruction]:
        del round_no
        return all_nodes(nodes)

    def aggregator(self, global_weights: Weights, round_no: int) -> Aggregator:
        del round_no
        # the mean lands in the model's dtype anyway; accumulating there halves the memory
        return WeightedMeanAggregator(global_weights, precision="model")

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        del state
