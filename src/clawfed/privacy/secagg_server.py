"""The server (coordinator) side of secure aggregation as a state machine over typed messages.

Bonawitz et al., CCS 2017 (honest-but-curious server), with SecAgg+ neighbourhoods (Bell et
al., CCS 2020) when configured. The server only relays public keys and ciphertexts, sums
masked vectors as they arrive (memory O(model)) and, in the end, removes the masks from
secrets reconstructed out of at least ``threshold`` shares. Per phase, the coordinator
feeds the messages that arrive before its deadline to ``receive_*`` and then calls
``close_*``; whoever did not answer by then counts as dropped.

A ``SecAggError`` from ``receive_*`` concerns one client's message (drop that client);
from ``close_*`` or ``finish`` it fails the round.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import NoReturn

import numpy as np

from clawfed.core import SecurityError, Weights
from clawfed.privacy.errors import SecAggError, SecAggFailure, ShamirError
from clawfed.privacy.secagg_config import SecAggConfig
from clawfed.privacy.secagg_crypto import (
    KEY_BYTES,
    KeyLabel,
    RingArray,
    add_mask,
    agree,
    commitment,
    derive_key,
    ring_dtype,
    verify_signature,
    x25519_from_secret,
)
from clawfed.privacy.secagg_graph import graph_seed, neighbourhoods
from clawfed.privacy.secagg_messages import (
    AdvertiseKeys,
    KeyDirectory,
    MaskedInput,
    RevealedShare,
    ShareInbox,
    ShareKeys,
    ShareKind,
    UnmaskRequest,
    UnmaskResponse,
    share_statement,
)
from clawfed.privacy.shamir import Share, reconstruct


class ServerPhase(StrEnum):
    """What the server is collecting."""

    KEYS = "advertise_keys"
    SHARES = "share_keys"
    MASKED = "masked_input"
    UNMASK = "unmasking"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True)
class SecAggResult:
    """The unmasked aggregate and who took part at each phase.

    ``weighted_sum`` is ``Σ w_i x_i`` (float64, each coordinate within ``error_bound`` of the
    exact sum of the clipped inputs), ``total_weight`` is ``Σ w_i``, both over ``masked``.
    """

    weighted_sum: Weights
    total_weight: int
    advertised: tuple[str, ...]
    shared: tuple[str, ...]
    masked: tuple[str, ...]
    unmasked: tuple[str, ...]
    error_bound: float

    def mean(self) -> Weights:
        """The weighted mean ``Σ w_i x_i / Σ w_i`` (the FedAvg delta), float64."""
        return self.weighted_sum.map(lambda a: np.asarray(a, np.float64) / self.total_weight)


class SecAggServer:
    """The coordinator's part in one secure-aggregation session.

    Parameters
    ----------
    config
        The session's settings, identical on every party.
    nonce
        The server's contribution to the public graph seed; random unless given (tests).
    """

    def __init__(self, config: SecAggConfig, *, nonce: bytes | None = None) -> None:
        self._cfg = config
        self._session = config.digest()
        self._nonce = secrets.token_bytes(KEY_BYTES) if nonce is None else nonce
        self._phase = ServerPhase.KEYS
        self._keys: dict[str, AdvertiseKeys] = {}
        self._neighbours: Mapping[str, frozenset[str]] = MappingProxyType({})
        self._shares: dict[str, ShareKeys] = {}
        self._length = config.fixed_point.vector_length(config.model)
        self._acc: RingArray = np.zeros(0, dtype=ring_dtype(config.fixed_point.ring_bits))
        self._masked: list[str] = []
        self._dropped: frozenset[str] = frozenset()
        self._mask_shares: dict[str, list[Share]] = {}
        self._key_shares: dict[str, list[Share]] = {}
        self._unmasked: list[str] = []

    @property
    def phase(self) -> ServerPhase:
        """The phase being collected."""
        return self._phase

    def awaiting(self) -> frozenset[str]:
        """Clients whose message for the current phase has not arrived yet."""
        if self._phase is ServerPhase.KEYS:
            return frozenset(self._cfg.participants) - set(self._keys)
        if self._phase is ServerPhase.SHARES:
            return frozenset(self._keys) - set(self._shares)
        if self._phase is ServerPhase.MASKED:
            return frozenset(self._shares) - set(self._masked)
        if self._phase is ServerPhase.UNMASK:
            return frozenset(self._masked) - set(self._unmasked)
        return frozenset()

    # -- checks ---------------------------------------------------------------------------

    def _accept(self, phase: ServerPhase, node_id: str, session_id: str) -> None:
        if self._phase is not phase:
            raise SecAggError(
                SecAggFailure.WRONG_PHASE,
                f"a {phase} message arrived while the server is in phase {self._phase}",
                node_id=node_id,
            )
        if session_id != self._cfg.session_id:
            raise SecAggError(
                SecAggFailure.BAD_MESSAGE,
                f"message is for session {session_id!r}, not {self._cfg.session_id!r}",
                node_id=node_id,
            )
        if node_id not in self.awaiting():
            raise SecAggError(
                SecAggFailure.BAD_MESSAGE,
                f"no {phase} message is expected from this client (not a member of the "
                "previous phase, or it already answered)",
                node_id=node_id,
            )

    def _fail(self, reason: SecAggFailure, detail: str, node_id: str | None = None) -> NoReturn:
        self._phase = ServerPhase.FAILED
        raise SecAggError(reason, detail, node_id=node_id)

    def _require(self, count: int, what: str) -> None:
        t = self._cfg.threshold
        if count < t:
            self._fail(
                SecAggFailure.TOO_FEW_CLIENTS,
                f"only {count} of {len(self._cfg.participants)} client(s) {what}, "
                f"threshold is {t}: too many clients dropped out",
            )

    # -- phase 0 --------------------------------------------------------------------------

    def receive_keys(self, message: AdvertiseKeys) -> None:
        """Take one client's public keys."""
        self._accept(ServerPhase.KEYS, message.node_id, message.session_id)
        new = {message.c_public, message.s_public, message.sign_public}
        used = {k for a in self._keys.values() for k in (a.c_public, a.s_public, a.sign_public)}
        if len(new) != 3 or new & used:
            raise SecAggError(
                SecAggFailure.BAD_MESSAGE,
                "advertised keys repeat one another or another client's",
                node_id=message.node_id,
            )
        self._keys[message.node_id] = message

    def close_keys(self) -> KeyDirectory:
        """End phase 0; the directory goes to every client that advertised keys."""
        self._accept_close(ServerPhase.KEYS)
        self._require(len(self._keys), "advertised keys")
        directory = KeyDirectory(
            session_id=self._cfg.session_id,
            nonce=self._nonce,
            keys=tuple(self._keys[u] for u in sorted(self._keys, key=self._cfg.index)),
        )
        seed = graph_seed(self._session, self._nonce, directory.key_material())
        self._neighbours = neighbourhoods(self._keys, self._cfg.neighbours, seed)
        self._phase = ServerPhase.SHARES
        return directory

    def _accept_close(self, phase: ServerPhase) -> None:
        if self._phase is not phase:
            raise SecAggError(
                SecAggFailure.WRONG_PHASE,
                f"cannot close phase {phase}: the server is in phase {self._phase}",
            )

    # -- phase 1 --------------------------------------------------------------------------

    def receive_shares(self, message: ShareKeys) -> None:
        """Take one client's commitment and encrypted shares (one per neighbour)."""
        node = message.node_id
        self._accept(ServerPhase.SHARES, node, message.session_id)
        recipients = [s.recipient for s in message.shares]
        if (
            any(s.sender != node for s in message.shares)
            or len(set(recipients)) != len(recipients)
            or set(recipients) != self._neighbours[node]
        ):
            raise SecAggError(
                SecAggFailure.BAD_MESSAGE,
                "encrypted shares must come from the sender and go to each of its "
                f"{len(self._neighbours[node])} neighbour(s) exactly once",
                node_id=node,
            )
        self._shares[node] = message

    def close_shares(self) -> dict[str, ShareInbox]:
        """End phase 1; each client that shared keys gets the ciphertexts addressed to it."""
        self._accept_close(ServerPhase.SHARES)
        shared = set(self._shares)
        self._require(len(shared), "shared keys")
        t = self._cfg.threshold
        for u in sorted(shared):
            holders = len(self._neighbours[u] & shared) + 1
            if holders < t:
                self._fail(
                    SecAggFailure.TOO_FEW_CLIENTS,
                    f"only {holders} client(s) of {u!r}'s neighbourhood shared keys, "
                    f"threshold is {t}",
                    node_id=u,
                )
        inboxes = {
            v: ShareInbox(
                session_id=self._cfg.session_id,
                recipient=v,
                shares=tuple(
                    s
                    for u in sorted(self._neighbours[v] & shared)
                    for s in self._shares[u].shares
                    if s.recipient == v
                ),
            )
            for v in sorted(shared)
        }
        self._acc = np.zeros(self._length, dtype=ring_dtype(self._cfg.fixed_point.ring_bits))
        self._phase = ServerPhase.MASKED
        return inboxes

    # -- phase 2 --------------------------------------------------------------------------

    def receive_masked(self, message: MaskedInput) -> None:
        """Add one client's masked vector into the running sum."""
        self._accept(ServerPhase.MASKED, message.node_id, message.session_id)
        v = message.vector
        if v.dtype != self._acc.dtype or v.shape != (self._length,):
            raise SecAggError(
                SecAggFailure.BAD_MESSAGE,
                f"masked input must be {self._length} {self._acc.dtype.name} elements, got "
                f"{v.shape} {v.dtype.name}",
                node_id=message.node_id,
            )
        np.add(self._acc, v, out=self._acc)
        self._masked.append(message.node_id)

    def close_masked(self) -> UnmaskRequest:
        """End phase 2; the request goes to every client whose masked input arrived."""
        self._accept_close(ServerPhase.MASKED)
        self._require(len(self._masked), "sent masked inputs")
        self._dropped = frozenset(self._shares) - set(self._masked)
        self._phase = ServerPhase.UNMASK
        return UnmaskRequest(
            session_id=self._cfg.session_id,
            survivors=tuple(sorted(self._masked, key=self._cfg.index)),
            dropped=tuple(sorted(self._dropped, key=self._cfg.index)),
        )

    # -- phase 3 --------------------------------------------------------------------------

    def receive_unmask(self, message: UnmaskResponse) -> None:
        """Take one survivor's revealed shares after checking each owner's signature.

        Raises
        ------
        SecAggError
            ``INCONSISTENT_SHARE`` naming the responder if a share is not the one its owner
            signed for it; ``BAD_MESSAGE`` if the response omits or adds owners.
        """
        node = message.node_id
        self._accept(ServerPhase.UNMASK, node, message.session_id)
        holds = (self._neighbours[node] & set(self._shares)) | {node}
        want_mask = holds & set(self._masked)
        want_key = holds & self._dropped
        got_mask = [s.owner for s in message.mask_shares]
        got_key = [s.owner for s in message.key_shares]
        if (
            len(set(got_mask)) != len(got_mask)
            or len(set(got_key)) != len(got_key)
            or set(got_mask) != want_mask
            or set(got_key) != want_key
        ):
            raise SecAggError(
                SecAggFailure.BAD_MESSAGE,
                f"unmask response must hold self-mask shares of {sorted(want_mask)} and "
                f"mask-key shares of {sorted(want_key)}, each once",
                node_id=node,
            )
        parsed: list[tuple[dict[str, list[Share]], str, Share]] = []
        for kind, revealed, store in (
            (ShareKind.MASK, message.mask_shares, self._mask_shares),
            (ShareKind.KEY, message.key_shares, self._key_shares),
        ):
            for r in revealed:
                parsed.append((store, r.owner, self._check_revealed(node, kind, r)))
        for store, owner, share in parsed:
            store.setdefault(owner, []).append(share)
        self._unmasked.append(node)

    def _check_revealed(self, holder: str, kind: ShareKind, r: RevealedShare) -> Share:
        x = self._cfg.index(holder)
        message = share_statement(self._session, kind, r.owner, holder, r.x, r.y)
        if r.x != x or not verify_signature(self._keys[r.owner].sign_public, r.signature, message):
            raise SecAggError(
                SecAggFailure.INCONSISTENT_SHARE,
                f"the {kind} share of {r.owner!r} it revealed is not the one {r.owner!r} "
                "dealt and signed for it",
                node_id=holder,
            )
        return Share.from_bytes(r.x, r.y)

    def finish(self) -> SecAggResult:
        """Reconstruct the secrets, remove every mask and decode the weighted sum.

        Raises
        ------
        SecAggError
            ``TOO_FEW_CLIENTS`` if fewer than ``threshold`` shares of a needed secret
            arrived; ``INCONSISTENT_SHARE`` naming a client whose signed shares do not lie
            on one polynomial, or reconstruct to a secret other than the one it committed
            to (self mask) or advertised (mask key); ``WRAP_AROUND`` if decoding fails.
        """
        self._accept_close(ServerPhase.UNMASK)
        self._require(len(self._unmasked), "answered the unmask request")
        acc = self._acc
        for u in sorted(self._masked, key=self._cfg.index):
            seed = self._recover(u, ShareKind.MASK, self._mask_shares.get(u, []))
            if commitment(self._session, u, seed) != self._shares[u].commitment:
                self._fail(
                    SecAggFailure.INCONSISTENT_SHARE,
                    "its self-mask shares reconstruct to a seed other than the one it committed to",
                    node_id=u,
                )
            add_mask(acc, derive_key(seed, KeyLabel.SELF_MASK, self._session, u), subtract=True)
        for u in sorted(self._dropped, key=self._cfg.index):
            self._remove_pair_masks(u, acc)
        fp = self._cfg.fixed_point
        try:
            total, weight = fp.decode(acc, self._cfg.model, len(self._masked))
        except SecAggError:
            self._phase = ServerPhase.FAILED
            raise
        self._phase = ServerPhase.DONE
        order: Callable[[str], int] = self._cfg.index
        return SecAggResult(
            weighted_sum=total,
            total_weight=weight,
            advertised=tuple(sorted(self._keys, key=order)),
            shared=tuple(sorted(self._shares, key=order)),
            masked=tuple(sorted(self._masked, key=order)),
            unmasked=tuple(sorted(self._unmasked, key=order)),
            error_bound=fp.error_bound(len(self._masked)),
        )

    def _recover(self, owner: str, kind: ShareKind, shares: list[Share]) -> bytes:
        t = self._cfg.threshold
        if len(shares) < t:
            self._fail(
                SecAggFailure.TOO_FEW_CLIENTS,
                f"only {len(shares)} share(s) of {owner!r}'s {kind} secret arrived, "
                f"threshold is {t}: too many clients dropped out during unmasking",
            )
        try:
            secret = reconstruct(sorted(shares, key=lambda s: s.x), t)
        except ShamirError as exc:
            self._fail(
                SecAggFailure.INCONSISTENT_SHARE,
                f"the {kind} shares it dealt and signed do not lie on one polynomial ({exc})",
                node_id=owner,
            )
        if secret >= 1 << (8 * KEY_BYTES):
            self._fail(
                SecAggFailure.INCONSISTENT_SHARE,
                f"its {kind} shares reconstruct to a value too large to be a 256-bit secret",
                node_id=owner,
            )
        return secret.to_bytes(KEY_BYTES, "big")

    def _remove_pair_masks(self, u: str, acc: RingArray) -> None:
        """Cancel the pairwise masks survivors added with the dropped client ``u``."""
        try:
            sk, pk = x25519_from_secret(
                self._recover(u, ShareKind.KEY, self._key_shares.get(u, []))
            )
        except SecurityError as exc:
            self._fail(SecAggFailure.INCONSISTENT_SHARE, str(exc), node_id=u)
        if pk != self._keys[u].s_public:
            self._fail(
                SecAggFailure.INCONSISTENT_SHARE,
                "its mask-key shares reconstruct to a key other than the one it advertised",
                node_id=u,
            )
        xu = self._cfg.index(u)
        for v in sorted(self._neighbours[u] & set(self._masked), key=self._cfg.index):
            lo, hi = sorted((u, v))
            key = derive_key(
                agree(sk, self._keys[v].s_public), KeyLabel.PAIR_MASK, self._session, lo, hi
            )
            # v added +PRG when it is below u (u above v), -PRG otherwise: undo that.
            add_mask(acc, key, subtract=self._cfg.index(v) < xu)
