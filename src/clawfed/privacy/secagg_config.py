"""The settings of one secure-aggregation session, shared by the server and every client.

The coordinator makes one ``SecAggConfig`` per round attempt and sends it (``to_json``) to
every participant with the round's task; all parties bind their keys to its ``digest()``,
so a client holding a different configuration cannot take part by mistake.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from clawfed.core import ConfigError, TensorSpec
from clawfed.privacy.quantize import FixedPoint


def secagg_plus_degree(clients: int) -> int | None:
    """A neighbour count for SecAgg+ with ``clients`` clients: ``2·ceil(log2 n)``.

    Bell et al. (CCS 2020) show that a degree of O(log n) keeps the protocol secure and
    correct with high probability. ``None`` when that degree would make the graph complete
    anyway (up to about 10 clients): use plain SecAgg then.
    """
    if isinstance(clients, bool) or not isinstance(clients, int) or clients < 2:
        raise ConfigError(f"secure aggregation needs at least 2 clients, got {clients!r}")
    k = 2 * math.ceil(math.log2(clients))
    return None if k >= clients - 1 else k


@dataclass(frozen=True)
class SecAggConfig:
    """One session of Bonawitz et al.'s protocol (CCS 2017), optionally SecAgg+.

    Attributes
    ----------
    session_id
        Unique per round attempt (e.g. ``"<job>/<round>/<attempt>"``); keys and masks are
        bound to it, so nothing carries over between sessions.
    participants
        Node ids that may take part; a node's Shamir coordinate is its position + 1.
    threshold
        Shares needed to reconstruct a client's secrets, and the fewest clients whose
        inputs may be summed. Complete graph: a majority of the participants up to all of
        them. SecAgg+: a majority of a neighbourhood (``neighbours + 1`` holders).
    fixed_point
        How updates are encoded into the ring.
    model
        Names, dtypes and shapes of the update tensors, in order.
    neighbours
        ``None`` for the complete graph (SecAgg); an even ``k`` for SecAgg+ (Bell et al.,
        CCS 2020), where each client masks with and shares to only ``k`` neighbours.
    """

    session_id: str
    participants: tuple[str, ...]
    threshold: int
    fixed_point: FixedPoint
    model: tuple[TensorSpec, ...]
    neighbours: int | None = None

    def __post_init__(self) -> None:
        if not self.session_id:
            raise ConfigError("session_id must not be empty")
        parts = tuple(self.participants)
        object.__setattr__(self, "participants", parts)
        object.__setattr__(self, "model", tuple(self.model))
        if any(not isinstance(p, str) or not p for p in parts):
            raise ConfigError(f"participants must be non-empty strings, got {list(parts)}")
        if len(set(parts)) != len(parts):
            raise ConfigError(f"participants must be unique, got {list(parts)}")
        n = len(parts)
        if n < 2:
            raise ConfigError(f"secure aggregation needs at least 2 participants, got {n}")
        if self.fixed_point.max_clients < n:
            raise ConfigError(
                f"fixed_point.max_clients={self.fixed_point.max_clients} is below the "
                f"{n} participants; the sum could wrap around"
            )
        if not self.model:
            raise ConfigError("model must name at least one tensor")
        k = self.neighbours
        if k is not None:
            if isinstance(k, bool) or not isinstance(k, int) or k < 2 or k % 2:
                raise ConfigError(f"neighbours must be an even int >= 2 or None, got {k!r}")
            if k >= n - 1:
                raise ConfigError(
                    f"neighbours={k} with {n} participants is the complete graph; "
                    "set neighbours to None"
                )
        holders = self.holders_per_client
        t = self.threshold
        if isinstance(t, bool) or not isinstance(t, int) or not holders // 2 < t <= holders:
            raise ConfigError(
                f"threshold must be an int in ({holders // 2}, {holders}] (a majority of the "
                f"{holders} holders of each client's shares), got {t!r}"
            )

    @property
    def holders_per_client(self) -> int:
        """How many clients hold a share of each client's secrets (itself included)."""
        n = len(self.participants)
        return n if self.neighbours is None else self.neighbours + 1

    def index(self, node_id: str) -> int:
        """The Shamir coordinate (1-based position) of ``node_id``."""
        try:
            return self.participants.index(node_id) + 1
        except ValueError:
            raise ConfigError(
                f"{node_id!r} is not a participant of session {self.session_id!r}"
            ) from None

    def digest(self) -> bytes:
        """SHA-256 of the canonical JSON form: the value every key is bound to."""
        return hashlib.sha256(self.to_json().encode()).digest()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable form (``from_dict`` reverses it)."""
        fp = self.fixed_point
        return {
            "session_id": self.session_id,
            "participants": list(self.participants),
            "threshold": self.threshold,
            "neighbours": self.neighbours,
            "fixed_point": {
                "clip": float(fp.clip),
                "frac_bits": fp.frac_bits,
                "max_weight": fp.max_weight,
                "max_clients": fp.max_clients,
                "ring_bits": fp.ring_bits,
            },
            "model": [
                {"name": s.name, "dtype": s.dtype, "shape": list(s.shape)} for s in self.model
            ],
        }

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, no spaces)."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SecAggConfig:
        """Rebuild from ``to_dict``; ``ConfigError`` naming the problem if it is malformed."""
        try:
            fp = data["fixed_point"]
            model = tuple(
                TensorSpec(str(m["name"]), str(m["dtype"]), tuple(int(d) for d in m["shape"]))
                for m in data["model"]
            )
            return cls(
                session_id=str(data["session_id"]),
                participants=tuple(str(p) for p in data["participants"]),
                threshold=int(data["threshold"]),
                fixed_point=FixedPoint(
                    float(fp["clip"]),
                    int(fp["frac_bits"]),
                    int(fp["max_weight"]),
                    int(fp["max_clients"]),
                    int(fp["ring_bits"]),
                ),
                model=model,
                neighbours=None if data["neighbours"] is None else int(data["neighbours"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"malformed secure-aggregation config: {exc!r}") from exc

    @classmethod
    def from_json(cls, text: str) -> SecAggConfig:
        """Rebuild from ``to_json``."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"secure-aggregation config is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError("secure-aggregation config must be a JSON object")
        return cls.from_dict(data)
