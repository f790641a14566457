"""Per-round update diagnostics: each update's norm and its cosine to the aggregate step.

The aggregate is only known once every update has been folded in, and keeping the updates
would make memory O(nodes × model). So each update leaves behind its exact L2 norm and a
*probe*: its values at a fixed, seeded sample of at most ``PROBE_SIZE`` coordinates (all of
them for a smaller model). The cosine between an update and the step (new − old global) is
computed on the probes; for a model no larger than the probe it is exact, otherwise it is
the cosine of a uniform coordinate sample, an unbiased-in-expectation estimate whose error
shrinks as 1/sqrt(PROBE_SIZE) for updates whose mass is spread over many coordinates.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from clawfed.core import Weights

PROBE_SIZE = 1 << 16

F64 = npt.NDArray[np.float64]


def _norm(w: Weights) -> float:
    total = 0.0
    for a in w.values():
        flat = a.reshape(-1)
        if flat.dtype.kind == "f":
            total += float(np.dot(flat, flat))
        else:
            f = flat.astype(np.float64)
            total += float(np.dot(f, f))
    return math.sqrt(total)


class RoundDiagnostics:
    """Collects (norm, probe) per node during a round; cosines once the step is known."""

    def __init__(self, global_weights: Weights, seed: int = 0) -> None:
        self._global = global_weights
        numel = global_weights.numel
        self._index: dict[str, npt.NDArray[np.intp]] = {}
        rng = np.random.default_rng(seed)
        for name, a in global_weights.items():
            share = a.size if numel <= PROBE_SIZE else max(1, PROBE_SIZE * a.size // numel)
            share = min(share, a.size)
            if share == a.size:
                self._index[name] = np.arange(a.size, dtype=np.intp)
            else:
                self._index[name] = np.sort(rng.choice(a.size, size=share, replace=False))
        self._records: dict[str, tuple[float, F64]] = {}

    def _probe(self, w: Weights) -> F64:
        parts = [np.asarray(w[n]).reshape(-1)[i].astype(np.float64) for n, i in self._index.items()]
        return np.concatenate(parts) if parts else np.zeros(0)

    def add(self, node_id: str, delta: Weights) -> None:
        """Record one folded-in update."""
        self._records[node_id] = (_norm(delta), self._probe(delta))

    def finish(self, new_weights: Weights) -> dict[str, tuple[float, float]]:
        """node id -> (norm of its update, cosine to the step new − old)."""
        step = self._probe(new_weights) - self._probe(self._global)
        step_norm = float(np.linalg.norm(step))
        out: dict[str, tuple[float, float]] = {}
        for node_id, (norm, probe) in self._records.items():
            pn = float(np.linalg.norm(probe))
            if step_norm == 0.0 or pn == 0.0:
                cos = 0.0
            else:
                cos = max(-1.0, min(1.0, float(np.dot(probe, step)) / (pn * step_norm)))
            out[node_id] = (norm, cos)
        return out
