"""Helpers for the secure-aggregation tests: seeded entropy and an in-process relay."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

import numpy as np

from clawfed.core import TensorSpec, Weights
from clawfed.privacy import (
    FixedPoint,
    KeyDirectory,
    MaskedInput,
    SecAggClient,
    SecAggConfig,
    SecAggResult,
    SecAggServer,
    ShareInbox,
    ShareKeys,
    UnmaskRequest,
    UnmaskResponse,
    decode_message,
    encode_message,
)
from clawfed.wire.payload import decode, encode

MODEL = (TensorSpec("w", "float32", (3, 4)), TensorSpec("b", "float32", (2,)))


def seeded_entropy(seed: str) -> Callable[[int], bytes]:
    """A deterministic byte source (SHAKE-256 of the seed and a counter) for repeatable runs."""
    counter = itertools.count()

    def entropy(n: int) -> bytes:
        return hashlib.shake_256(f"{seed}/{next(counter)}".encode()).digest(n)

    return entropy


def make_config(
    n: int,
    threshold: int,
    *,
    neighbours: int | None = None,
    model: tuple[TensorSpec, ...] = MODEL,
    clip: float = 1.0,
    frac_bits: int = 16,
    max_weight: int = 1000,
    session: str = "job/1/1",
) -> SecAggConfig:
    """A session of ``n`` clients named ``c00``, ``c01`` …"""
    fp = FixedPoint.choose(clip=clip, frac_bits=frac_bits, max_weight=max_weight, max_clients=n)
    ids = tuple(f"c{i:02d}" for i in range(n))
    return SecAggConfig(session, ids, threshold, fp, model, neighbours)


def random_updates(
    cfg: SecAggConfig, seed: int, *, scale: float = 1.0
) -> tuple[dict[str, Weights], dict[str, int]]:
    """Updates uniform in ``[-scale, scale]`` and weights in ``[1, max_weight]`` per client."""
    rng = np.random.default_rng(seed)
    updates = {
        c: Weights((s.name, rng.uniform(-scale, scale, s.shape).astype(s.dtype)) for s in cfg.model)
        for c in cfg.participants
    }
    weights = {c: int(rng.integers(1, cfg.fixed_point.max_weight + 1)) for c in cfg.participants}
    return updates, weights


def expected_sum(
    cfg: SecAggConfig,
    updates: Mapping[str, Weights],
    weights: Mapping[str, int],
    members: Collection[str],
) -> tuple[dict[str, np.ndarray], int]:
    """The plain ``Σ w_i clip(x_i)`` and ``Σ w_i`` over ``members``, in float64."""
    fp = cfg.fixed_point
    total = {s.name: np.zeros(s.shape) for s in cfg.model}
    for c in members:
        w = fp.capped_weight(weights[c])
        for s in cfg.model:
            x = np.clip(np.asarray(updates[c][s.name], dtype=np.float64), -fp.clip, fp.clip)
            total[s.name] += w * x
    return total, sum(fp.capped_weight(weights[c]) for c in members)


def over_the_wire(message: MaskedInput, ring_bits: int) -> MaskedInput:
    """The masked input after a trip through the chunked tensor payload codec."""
    payload = encode(message.to_weights(), "masked", chunk_size=1024)
    weights = decode(payload.header, payload.chunks(), max_total_bytes=1 << 30)
    return MaskedInput.from_weights(message.session_id, message.node_id, weights, ring_bits)


@dataclass
class Relay:
    """Runs one session in process, passing control messages through their JSON codec."""

    cfg: SecAggConfig
    seed: str = "seed"
    server: SecAggServer = field(init=False)
    clients: dict[str, SecAggClient] = field(init=False)
    directory: KeyDirectory | None = None
    inboxes: dict[str, ShareInbox] = field(default_factory=dict)
    request: UnmaskRequest | None = None
    masked: dict[str, MaskedInput] = field(default_factory=dict)
    responses: dict[str, UnmaskResponse] = field(default_factory=dict)

    def __post_init__(self) -> None:
        nonce = hashlib.sha256(self.seed.encode()).digest()
        self.server = SecAggServer(self.cfg, nonce=nonce)
        self.clients = {
            c: SecAggClient(self.cfg, c, entropy=seeded_entropy(f"{self.seed}/{c}"))
            for c in self.cfg.participants
        }

    def advertise(self, members: Collection[str]) -> KeyDirectory:
        for c in members:
            self.server.receive_keys(decode_message(encode_message(self.clients[c].advertise())))
        directory = self.server.close_keys()
        relayed = decode_message(encode_message(directory))
        assert isinstance(relayed, KeyDirectory)
        self.directory = relayed
        return relayed

    def share(self, members: Collection[str]) -> dict[str, ShareInbox]:
        assert self.directory is not None
        for c in members:
            msg = decode_message(encode_message(self.clients[c].share_keys(self.directory)))
            assert isinstance(msg, ShareKeys)
            self.server.receive_shares(msg)
        self.inboxes = {}
        for v, box in self.server.close_shares().items():
            relayed = decode_message(encode_message(box))
            assert isinstance(relayed, ShareInbox)
            self.inboxes[v] = relayed
        return self.inboxes

    def mask(
        self,
        members: Collection[str],
        updates: Mapping[str, Weights],
        weights: Mapping[str, int],
    ) -> UnmaskRequest:
        for c in members:
            msg = self.clients[c].mask(self.inboxes[c], updates[c], weights[c])
            self.masked[c] = msg
            self.server.receive_masked(over_the_wire(msg, self.cfg.fixed_point.ring_bits))
        request = decode_message(encode_message(self.server.close_masked()))
        assert isinstance(request, UnmaskRequest)
        self.request = request
        return request

    def unmask(self, members: Collection[str]) -> SecAggResult:
        assert self.request is not None
        for c in members:
            msg = decode_message(encode_message(self.clients[c].unmask(self.request)))
            assert isinstance(msg, UnmaskResponse)
            self.responses[c] = msg
            self.server.receive_unmask(msg)
        return self.server.finish()

    def run(
        self,
        updates: Mapping[str, Weights],
        weights: Mapping[str, int],
        *,
        never: Collection[str] = (),
        after_keys: Collection[str] = (),
        after_shares: Collection[str] = (),
        after_masked: Collection[str] = (),
    ) -> SecAggResult:
        """The whole protocol; each collection drops clients after that phase."""
        alive = [c for c in self.cfg.participants if c not in set(never)]
        self.advertise(alive)
        alive = [c for c in alive if c not in set(after_keys)]
        self.share(alive)
        alive = [c for c in alive if c not in set(after_shares)]
        self.mask(alive, updates, weights)
        alive = [c for c in alive if c not in set(after_masked)]
        return self.unmask(alive)
