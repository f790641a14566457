"""``Weights``: an ordered, read-only mapping of parameter name to numpy array."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from clawfed.core.errors import RejectReason, UpdateRejected

#: dtypes that may cross the wire; names are numpy's.
WIRE_DTYPES: frozenset[str] = frozenset(
    {"float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool"}
)

Array = npt.NDArray[np.generic]

#: Elements per block when ``all_finite`` has to look at them one by one.
_FINITE_BLOCK = 1 << 18


@dataclass(frozen=True)
class TensorSpec:
    """Name, dtype and shape of one tensor."""

    name: str
    dtype: str
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("tensor name must not be empty")
        if self.dtype not in WIRE_DTYPES:
            raise ValueError(
                f"tensor {self.name!r}: dtype must be one of {sorted(WIRE_DTYPES)}, "
                f"got {self.dtype!r}"
            )
        if any(d < 0 for d in self.shape):
            raise ValueError(f"tensor {self.name!r}: shape must be non-negative, got {self.shape}")

    @property
    def numel(self) -> int:
        """Number of elements."""
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def nbytes(self) -> int:
        """Size in bytes of the tensor's raw buffer."""
        return self.numel * np.dtype(self.dtype).itemsize


def all_finite(a: Array) -> bool:
    """True if the float array ``a`` holds no NaN and no Inf; no array-sized temporary.

    The sum of an array is finite only if every element is (a NaN or an Inf anywhere makes
    every partial sum it enters NaN or Inf), so a finite sum settles it in one pass without
    allocating. A sum that overflowed from finite values is not proof of anything; then the
    elements are checked block by block.
    """
    flat = a.reshape(-1)
    if flat.size == 0:
        return True
    wide = np.float64 if flat.dtype.itemsize < 4 else None  # float16 overflows at 65504
    with np.errstate(over="ignore", invalid="ignore"):
        if bool(np.isfinite(np.add.reduce(flat, dtype=wide))):
            return True
    for start in range(0, flat.size, _FINITE_BLOCK):
        if not bool(np.isfinite(flat[start : start + _FINITE_BLOCK]).all()):
            return False
    return True


class Weights(Mapping[str, Array]):
    """Ordered mapping of parameter name to ndarray; the order is the insertion order.

    The arrays are not copied on construction; treat them as read-only.
    """

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, Array] | Iterable[tuple[str, Array]] = ()) -> None:
        pairs = items.items() if isinstance(items, Mapping) else items
        store: dict[str, Array] = {}
        for name, arr in pairs:
            if not isinstance(name, str) or not name:
                raise ValueError(f"tensor names must be non-empty strings, got {name!r}")
            if name in store:
                raise ValueError(f"tensor name {name!r} appears twice")
            if not isinstance(arr, np.ndarray):
                raise TypeError(f"tensor {name!r} must be a numpy array, got {type(arr).__name__}")
            if arr.dtype.name not in WIRE_DTYPES:
                raise ValueError(
                    f"tensor {name!r}: dtype must be one of {sorted(WIRE_DTYPES)}, "
                    f"got {arr.dtype.name!r}"
                )
            store[name] = arr
        self._items = store

    def __getitem__(self, key: str) -> Array:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        inner = ", ".join(f"{s.name}: {s.dtype}{list(s.shape)}" for s in self.spec())
        return f"Weights({inner})"

    def spec(self) -> tuple[TensorSpec, ...]:
        """The name, dtype and shape of every tensor, in order."""
        return tuple(TensorSpec(n, a.dtype.name, tuple(a.shape)) for n, a in self._items.items())

    @property
    def nbytes(self) -> int:
        """Total bytes of all tensors."""
        return sum(int(a.nbytes) for a in self._items.values())

    @property
    def numel(self) -> int:
        """Total number of elements of all tensors."""
        return sum(int(a.size) for a in self._items.values())

    def map(self, fn: Callable[[Array], Array]) -> Weights:
        """A new ``Weights`` with ``fn`` applied to every array."""
        return Weights((n, fn(a)) for n, a in self._items.items())

    def zeros_like(self, dtype: str | None = None) -> Weights:
        """Zeros with the same names and shapes (and dtype unless given)."""
        return Weights((n, np.zeros(a.shape, dtype=dtype or a.dtype)) for n, a in self.items())

    def l2_norm(self) -> float:
        """L2 norm of all tensors taken together (as float64)."""
        total = 0.0
        for a in self._items.values():
            f = a.astype(np.float64, copy=False)
            total += float(np.dot(f.ravel(), f.ravel()))
        return float(np.sqrt(total))

    def check_finite(self) -> None:
        """Raise ``UpdateRejected(NON_FINITE)`` naming the first tensor holding NaN or Inf."""
        for name, a in self._items.items():
            if a.dtype.kind == "f" and not all_finite(a):
                bad = int(np.size(a) - np.count_nonzero(np.isfinite(a)))
                raise UpdateRejected(
                    RejectReason.NON_FINITE, f"tensor {name!r} holds {bad} NaN or Inf value(s)"
                )

    def check_conforms(self, expected: Iterable[TensorSpec]) -> None:
        """Raise ``UpdateRejected`` unless names, dtypes and shapes equal ``expected``."""
        want = {s.name: s for s in expected}
        for name, a in self._items.items():
            spec = want.get(name)
            if spec is None:
                raise UpdateRejected(RejectReason.UNKNOWN_TENSOR, f"unknown tensor {name!r}")
            if a.dtype.name != spec.dtype:
                raise UpdateRejected(
                    RejectReason.DTYPE_MISMATCH,
                    f"tensor {name!r} has dtype {a.dtype.name}, expected {spec.dtype}",
                )
            if tuple(a.shape) != spec.shape:
                raise UpdateRejected(
                    RejectReason.SHAPE_MISMATCH,
                    f"tensor {name!r} has shape {tuple(a.shape)}, expected {spec.shape}",
                )
        missing = [n for n in want if n not in self._items]
        if missing:
            raise UpdateRejected(
                RejectReason.MISSING_TENSOR, f"missing tensor(s): {', '.join(map(repr, missing))}"
            )
