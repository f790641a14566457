"""Strategy state across rounds: JSON via ``state_dict``, moment arrays via ``state_arrays``.

Server optimizer moments are as large as the model, so they do not travel inside the
JSON of ``state_dict()``. A strategy holding arrays also implements ``ArrayStateful``:
``state_arrays()`` returns them as ``Weights`` (float32) for the coordinator to save in a
safetensors artifact next to the global model, and ``state_dict()`` records their
SHA-256 so a mismatched pair is refused on restore. Restore order does not matter.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from clawfed.core import ConfigError, JobError, TensorSpec, Weights


@runtime_checkable
class ArrayStateful(Protocol):
    """A strategy whose state includes model-sized arrays kept outside ``state_dict``."""

    def state_arrays(self) -> Weights:
        """The state arrays (e.g. ``m/<param>``, ``v/<param>``), float32; empty before round 1."""
        ...

    def load_state_arrays(self, arrays: Weights) -> None:
        """Restore what ``state_arrays`` returned."""
        ...


def weights_sha256(weights: Weights) -> str:
    """Hex SHA-256 over every tensor's name, dtype, shape and little-endian bytes, in order."""
    h = hashlib.sha256()
    for name, a in weights.items():
        h.update(f"{name}|{a.dtype.name}|{list(a.shape)}\n".encode())
        # hashed through the buffer protocol: no model-sized copy of a contiguous tensor
        little = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))
        h.update(little.reshape(-1).view(np.uint8).data)
    return h.hexdigest()


def require_empty_state(strategy: str, state: Mapping[str, Any]) -> None:
    """Raise ``ConfigError`` unless ``state`` is empty (for strategies without state)."""
    if state:
        raise ConfigError(
            f"strategy {strategy!r} keeps no state across rounds, but the state to load "
            f"holds {sorted(state)!r}; was it saved by another strategy?"
        )


class MomentState:
    """Named float32 moment arrays (``slot/param``) plus a step counter and restore checks.

    ``slots`` maps each moment an optimizer keeps to its initial value (e.g.
    ``{"m": 0.0, "v": tau**2}``). Arrays are created on the first step from the model's spec.
    """

    def __init__(self, owner: str, slots: Mapping[str, float]) -> None:
        self._owner = owner
        self._init = dict(slots)
        self._slots = tuple(slots)
        self.step = 0
        self._arrays: dict[str, dict[str, np.ndarray]] | None = None
        self._expected_sha: str | None = None

    def slot(self, slot: str, spec: Sequence[TensorSpec]) -> dict[str, np.ndarray]:
        """The arrays of ``slot`` for a model of ``spec``, made with the initial values if new."""
        if self._arrays is None:
            if self.step > 0:
                raise JobError(
                    f"{self._owner}: state_dict says {self.step} step(s) were taken but the "
                    "state arrays were not restored; call load_state_arrays() with the saved "
                    "arrays before aggregating"
                )
            self._arrays = {
                s: {t.name: np.full(t.shape, self._init[s], dtype=np.float32) for t in spec}
                for s in self._slots
            }
        arrays = self._arrays[slot]
        want = {t.name: t.shape for t in spec}
        have = {n: a.shape for n, a in arrays.items()}
        if want != have:
            raise ConfigError(
                f"{self._owner}: optimizer state is for tensors {have}, "
                f"but the model has {want}; reset the job's optimizer state"
            )
        return arrays

    def arrays(self) -> Weights:
        """All moments as one ``Weights`` named ``slot/param``; empty before the first step."""
        if self._arrays is None:
            return Weights()
        return Weights((f"{s}/{n}", a) for s in self._slots for n, a in self._arrays[s].items())

    def scalars(self) -> dict[str, Any]:
        """JSON-serializable part: step count and digest of the arrays."""
        sha = None if self._arrays is None else weights_sha256(self.arrays())
        return {"step": self.step, "arrays_sha256": sha}

    def load_scalars(self, state: Mapping[str, Any]) -> None:
        """Restore ``scalars()``; arrays already loaded are kept only if their digest matches."""
        step = state.get("step")
        sha = state.get("arrays_sha256")
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ConfigError(f"{self._owner}: state 'step' must be an int >= 0, got {step!r}")
        if not (sha is None or isinstance(sha, str)):
            raise ConfigError(f"{self._owner}: state 'arrays_sha256' must be a str, got {sha!r}")
        if (sha is None) != (step == 0):
            raise ConfigError(
                f"{self._owner}: state with step={step} must "
                f"{'not ' if step == 0 else ''}carry an arrays_sha256, got {sha!r}"
            )
        self.step = step
        self._expected_sha = sha
        if self._arrays is not None and weights_sha256(self.arrays()) != sha:
            self._arrays = None

    def load_arrays(self, arrays: Weights) -> None:
        """Restore ``arrays()``; refused if a loaded state_dict expects other arrays."""
        if self._expected_sha is not None and weights_sha256(arrays) != self._expected_sha:
            raise ConfigError(
                f"{self._owner}: the state arrays do not match the arrays_sha256 of the loaded "
                "state_dict; they were saved at a different round"
            )
        if len(arrays) == 0:
            self._arrays = None
            return
        parsed: dict[str, dict[str, np.ndarray]] = {s: {} for s in self._slots}
        for key, a in arrays.items():
            slot, sep, param = key.partition("/")
            if not sep or slot not in parsed or not param:
                raise ConfigError(
                    f"{self._owner}: state array {key!r} must be named '<slot>/<param>' "
                    f"with slot in {list(self._slots)}"
                )
            if a.dtype != np.float32:
                raise ConfigError(
                    f"{self._owner}: state array {key!r} must be float32, got {a.dtype.name}"
                )
            parsed[slot][param] = np.array(a, dtype=np.float32)
        shapes = [{n: a.shape for n, a in parsed[s].items()} for s in self._slots]
        if any(s != shapes[0] for s in shapes):
            raise ConfigError(
                f"{self._owner}: state slots {list(self._slots)} must hold the same tensors "
                "with the same shapes"
            )
        self._arrays = parsed
