"""Fixed-point encoding of weighted updates into the ring Z_{2^k} used by secure aggregation.

A client with update ``x`` (all tensors flattened in model order) and integer weight ``w``
(its sample count, capped at ``max_weight``) sends the ring vector

    ``[round(w · clip(x, -c, c) · 2^f) mod 2^k ..., w]``

so the server's unmasked sum holds ``Σ w_i x_i`` (fixed point) and ``Σ w_i`` (exact) and it
learns the FedAvg mean without any single weight. The ring is the smallest of 2^32 and 2^64
in which the largest possible sum over ``max_clients`` clients cannot wrap around, as a
signed two's-complement number; ``FixedPoint`` refuses settings for which even 2^64 is too
small. The error of the decoded sum is at most ``n / 2^(f+1)`` per coordinate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from clawfed.core import ConfigError, TensorSpec, Weights
from clawfed.privacy.errors import SecAggError, SecAggFailure
from clawfed.privacy.secagg_crypto import RingArray, ring_dtype

_RINGS = (32, 64)
_FLOAT_EXACT = 1 << 52  # float64 represents every integer up to here exactly


@dataclass(frozen=True)
class FixedPoint:
    """How updates become ring elements; build it with :meth:`choose`.

    Attributes
    ----------
    clip
        Every coordinate is clipped to ``[-clip, clip]`` before encoding.
    frac_bits
        Fractional bits: the scale is ``2**frac_bits``.
    max_weight
        Largest weight a client may carry; bigger sample counts are capped to it.
    max_clients
        Most clients whose vectors are summed.
    ring_bits
        32 or 64: the ring is Z_{2^ring_bits}.
    """

    clip: float
    frac_bits: int
    max_weight: int
    max_clients: int
    ring_bits: int

    def __post_init__(self) -> None:
        if not (isinstance(self.clip, float | int) and math.isfinite(self.clip) and self.clip > 0):
            raise ConfigError(f"fixed-point clip must be a finite number > 0, got {self.clip!r}")
        for name, lo in (("frac_bits", 0), ("max_weight", 1), ("max_clients", 1)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ConfigError(f"fixed-point {name} must be an int >= {lo}, got {v!r}")
        if self.ring_bits not in _RINGS:
            raise ConfigError(f"ring_bits must be 32 or 64, got {self.ring_bits!r}")
        per_client = self.client_bound()
        if per_client > _FLOAT_EXACT:
            raise ConfigError(
                f"max_weight·clip·2^frac_bits = {per_client} exceeds 2^52, where float64 "
                "rounding stops being exact; lower frac_bits, clip or max_weight"
            )
        need = self.sum_bound()
        if need >= 1 << (self.ring_bits - 1):
            raise ConfigError(
                f"a sum over {self.max_clients} clients can reach ±{need}, which wraps around "
                f"in Z_2^{self.ring_bits}; use a bigger ring or lower frac_bits, clip or "
                "max_weight"
            )

    @classmethod
    def choose(
        cls, *, clip: float, frac_bits: int, max_weight: int, max_clients: int
    ) -> FixedPoint:
        """The encoding with the smallest ring (2^32, else 2^64) in which no sum can wrap.

        Raises
        ------
        ConfigError
            If even 2^64 cannot hold ``max_clients · max_weight · clip · 2^frac_bits``.
        """
        last: ConfigError | None = None
        for bits in _RINGS:
            try:
                return cls(clip, frac_bits, max_weight, max_clients, bits)
            except ConfigError as exc:
                last = exc
        assert last is not None
        raise last

    @property
    def scale(self) -> float:
        """``2**frac_bits``."""
        return float(1 << self.frac_bits)

    def client_bound(self) -> int:
        """Largest magnitude of one encoded coordinate: ``ceil(max_weight·clip·scale)``."""
        return math.ceil(self.max_weight * float(self.clip) * self.scale)

    def sum_bound(self) -> int:
        """Largest magnitude of a summed coordinate (or of the summed weights)."""
        return self.max_clients * max(self.client_bound(), self.max_weight)

    def error_bound(self, clients: int) -> float:
        """Largest error of one coordinate of the decoded ``Σ w_i x_i`` over ``clients``."""
        return clients * 0.5 / self.scale

    def vector_length(self, model: Sequence[TensorSpec]) -> int:
        """Ring elements per client: every model element, plus one for the weight."""
        return sum(s.numel for s in model) + 1

    def capped_weight(self, num_samples: int) -> int:
        """``min(num_samples, max_weight)``; ``ConfigError`` unless it is an int >= 1."""
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ConfigError(f"a client's weight must be an int >= 1, got {num_samples!r}")
        return min(num_samples, self.max_weight)

    def encode(self, update: Weights, weight: int, model: Sequence[TensorSpec]) -> RingArray:
        """The ring vector of ``weight · clip(update)`` followed by ``weight``.

        ``weight`` is capped at ``max_weight``; ``update`` must match ``model`` and be finite.
        """
        update.check_conforms(model)
        update.check_finite()
        w = self.capped_weight(weight)
        dtype = ring_dtype(self.ring_bits)
        out: RingArray = np.empty(self.vector_length(model), dtype=dtype)
        pos = 0
        for spec in model:
            flat = np.asarray(update[spec.name], dtype=np.float64).reshape(-1)
            scaled = np.rint(np.clip(flat, -self.clip, self.clip) * (w * self.scale))
            out[pos : pos + flat.size] = scaled.astype(np.int64).astype(dtype)
            pos += flat.size
        out[pos] = w
        return out

    def decode(
        self, total: RingArray, model: Sequence[TensorSpec], clients: int
    ) -> tuple[Weights, int]:
        """``(Σ w_i x_i as float64 Weights, Σ w_i)`` from the unmasked ring sum.

        Raises
        ------
        SecAggError
            ``WRAP_AROUND`` if the weight sum is outside ``[clients, clients·max_weight]``,
            the sign that masks were not removed or the sum wrapped.
        """
        signed = _as_signed(total, self.ring_bits)
        weight_sum = int(signed[-1])
        if not clients <= weight_sum <= clients * self.max_weight:
            raise SecAggError(
                SecAggFailure.WRAP_AROUND,
                f"the unmasked weight sum is {weight_sum}, outside [{clients}, "
                f"{clients * self.max_weight}] for {clients} client(s): masks were not "
                "removed correctly or the sum wrapped around",
            )
        values = signed[:-1].astype(np.float64) / self.scale
        out: list[tuple[str, npt.NDArray[np.float64]]] = []
        pos = 0
        for spec in model:
            out.append((spec.name, values[pos : pos + spec.numel].reshape(spec.shape)))
            pos += spec.numel
        return Weights(out), weight_sum


def _as_signed(total: RingArray, ring_bits: int) -> npt.NDArray[np.int64]:
    if ring_bits == 32:
        return total.astype(np.uint32).view(np.int32).astype(np.int64)
    return total.astype(np.uint64).view(np.int64)
