"""The client (node) side of secure aggregation as a state machine over typed messages.

Bonawitz et al., "Practical Secure Aggregation for Privacy-Preserving Machine Learning",
CCS 2017, in its honest-but-curious-server form, with SecAgg+ neighbourhoods (Bell et al.,
CCS 2020) when the config asks for them. One ``SecAggClient`` lives for one session; its
methods must be called in order, each at most once:

``advertise() → share_keys(directory) → mask(inbox, update, samples) → unmask(request)``

The client masks its fixed-point input ``x`` as
``y = x + PRG(b) + Σ_{v>u} PRG(s_uv) − Σ_{v<u} PRG(s_uv)`` over its neighbours ``v`` that
shared keys (``>`` compares Shamir coordinates), all in Z_{2^k}.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from enum import StrEnum

from pydantic import ValidationError

from clawfed.core import SecurityError, Weights
from clawfed.privacy.errors import SecAggError, SecAggFailure
from clawfed.privacy.secagg_config import SecAggConfig
from clawfed.privacy.secagg_crypto import (
    KEY_BYTES,
    KeyLabel,
    add_mask,
    agree,
    commitment,
    derive_key,
    ed25519_from_secret,
    seal,
    statement,
    unseal,
    verify_signature,
    x25519_from_secret,
)
from clawfed.privacy.secagg_graph import graph_seed, neighbourhoods
from clawfed.privacy.secagg_messages import (
    AdvertiseKeys,
    EncryptedShare,
    KeyDirectory,
    MaskedInput,
    RevealedShare,
    ShareInbox,
    ShareKeys,
    ShareKind,
    SharePlaintext,
    UnmaskRequest,
    UnmaskResponse,
    share_statement,
)
from clawfed.privacy.shamir import Share, randbelow_from, split

#: Returns that many random bytes (``os.urandom`` by default).
Entropy = Callable[[int], bytes]


class ClientPhase(StrEnum):
    """Where a client stands in the session."""

    NEW = "new"
    ADVERTISED = "advertised"
    SHARED = "shared"
    MASKED = "masked"
    DONE = "done"


def share_aad(session: bytes, sender: str, recipient: str) -> bytes:
    """Associated data binding a share ciphertext to its session, sender and recipient."""
    return statement(b"clawfed/secagg/v1/share-aad", session, sender.encode(), recipient.encode())


class SecAggClient:
    """One node's part in one secure-aggregation session.

    Parameters
    ----------
    config
        The session's settings, identical on every party.
    node_id
        This node; it must be one of ``config.participants``.
    entropy
        Source of every secret (keys, self-mask seed, Shamir coefficients): ``os.urandom``;
        tests pass a seeded deterministic generator to make runs repeatable.
    """

    def __init__(
        self, config: SecAggConfig, node_id: str, *, entropy: Entropy = os.urandom
    ) -> None:
        self._cfg = config
        self._me = node_id
        self._x = config.index(node_id)
        self._session = config.digest()
        self._entropy = entropy
        self._c_sk, self._c_pk = x25519_from_secret(entropy(KEY_BYTES))
        self._s_sk, self._s_pk = x25519_from_secret(entropy(KEY_BYTES))
        self._sign_sk, self._sign_pk = ed25519_from_secret(entropy(KEY_BYTES))
        self._phase = ClientPhase.NEW
        self._keys: dict[str, AdvertiseKeys] = {}
        self._neighbours: frozenset[str] = frozenset()
        self._self_mask_seed = b""
        self._held: dict[str, SharePlaintext] = {}  # owner -> the shares it dealt to me
        self._shared: frozenset[str] = frozenset()  # neighbours that shared keys with me

    @property
    def phase(self) -> ClientPhase:
        """The step the client has completed."""
        return self._phase

    @property
    def node_id(self) -> str:
        """This client's node id."""
        return self._me

    def _expect(self, phase: ClientPhase, step: str, session_id: str) -> None:
        if self._phase is not phase:
            raise SecAggError(
                SecAggFailure.WRONG_PHASE,
                f"{step} needs phase {phase}, the client is in phase {self._phase}",
                node_id=self._me,
            )
        if session_id != self._cfg.session_id:
            raise SecAggError(
                SecAggFailure.BAD_MESSAGE,
                f"{step}: message is for session {session_id!r}, "
                f"this client runs {self._cfg.session_id!r}",
            )

    def advertise(self) -> AdvertiseKeys:
        """Phase 0: this client's public keys."""
        self._expect(ClientPhase.NEW, "advertise", self._cfg.session_id)
        self._phase = ClientPhase.ADVERTISED
        return AdvertiseKeys(
            session_id=self._cfg.session_id,
            node_id=self._me,
            c_public=self._c_pk,
            s_public=self._s_pk,
            sign_public=self._sign_pk,
        )

    def share_keys(self, directory: KeyDirectory) -> ShareKeys:
        """Phase 1: Shamir-share the mask key and a fresh self-mask seed among the neighbours.

        Raises
        ------
        SecAggError
            ``BAD_MESSAGE`` if the directory lacks this client's own keys, names a
            non-participant or repeats a key; ``TOO_FEW_CLIENTS`` if fewer than
            ``threshold`` clients could hold this client's shares.
        """
        self._expect(ClientPhase.ADVERTISED, "share_keys", directory.session_id)
        keys = self._check_directory(directory)
        seed = graph_seed(self._session, directory.nonce, directory.key_material())
        self._neighbours = neighbourhoods(keys, self._cfg.neighbours, seed)[self._me]
        holders = sorted(self._neighbours | {self._me}, key=self._cfg.index)
        t = self._cfg.threshold
        if len(holders) < t:
            raise SecAggError(
                SecAggFailure.TOO_FEW_CLIENTS,
                f"only {len(holders)} client(s) advertised keys in this client's "
                f"neighbourhood, threshold is {t}",
                node_id=self._me,
            )
        self._keys = keys
        self._self_mask_seed = self._entropy(KEY_BYTES)
        xs = [self._cfg.index(h) for h in holders]
        rand = randbelow_from(self._entropy)
        key_secret = int.from_bytes(self._s_sk.private_bytes_raw(), "big")
        key_shares = split(key_secret, t, xs, randbelow=rand)
        mask_shares = split(int.from_bytes(self._self_mask_seed, "big"), t, xs, randbelow=rand)
        out: list[EncryptedShare] = []
        for holder, ks, ms in zip(holders, key_shares, mask_shares, strict=True):
            plain = self._signed_plaintext(holder, ks, ms)
            if holder == self._me:
                self._held[self._me] = plain
                continue
            key = self._encryption_key(holder)
            blob = seal(
                key, plain.model_dump_json().encode(), share_aad(self._session, self._me, holder)
            )
            out.append(EncryptedShare(sender=self._me, recipient=holder, ciphertext=blob))
        self._phase = ClientPhase.SHARED
        return ShareKeys(
            session_id=self._cfg.session_id,
            node_id=self._me,
            commitment=commitment(self._session, self._me, self._self_mask_seed),
            shares=tuple(out),
        )

    def _check_directory(self, directory: KeyDirectory) -> dict[str, AdvertiseKeys]:
        keys: dict[str, AdvertiseKeys] = {}
        seen: set[bytes] = set()
        for entry in directory.keys:
            if entry.node_id not in self._cfg.participants or entry.node_id in keys:
                raise SecAggError(
                    SecAggFailure.BAD_MESSAGE,
                    f"key directory lists {entry.node_id!r} twice or as a non-participant",
                )
            if entry.session_id != self._cfg.session_id:
                raise SecAggError(
                    SecAggFailure.BAD_MESSAGE,
                    f"key directory entry of {entry.node_id!r} is for another session",
                )
            for k in (entry.c_public, entry.s_public, entry.sign_public):
                if k in seen:
                    raise SecAggError(
                        SecAggFailure.BAD_MESSAGE,
                        f"key directory repeats a public key (at {entry.node_id!r})",
                    )
                seen.add(k)
            keys[entry.node_id] = entry
        mine = keys.get(self._me)
        if mine is None or (mine.c_public, mine.s_public, mine.sign_public) != (
            self._c_pk,
            self._s_pk,
            self._sign_pk,
        ):
            raise SecAggError(
                SecAggFailure.BAD_MESSAGE,
                "key directory does not hold this client's own keys unchanged",
                node_id=self._me,
            )
        return keys

    def _signed_plaintext(self, holder: str, ks: Share, ms: Share) -> SharePlaintext:
        key_y, mask_y = ks.y_bytes(), ms.y_bytes()
        sign = self._sign_sk.sign
        return SharePlaintext(
            owner=self._me,
            holder=holder,
            x=ks.x,
            key_y=key_y,
            mask_y=mask_y,
            key_signature=sign(
                share_statement(self._session, ShareKind.KEY, self._me, holder, ks.x, key_y)
            ),
            mask_signature=sign(
                share_statement(self._session, ShareKind.MASK, self._me, holder, ms.x, mask_y)
            ),
        )

    def _encryption_key(self, peer: str) -> bytes:
        shared = agree(self._c_sk, self._keys[peer].c_public)
        lo, hi = sorted((self._me, peer))
        return derive_key(shared, KeyLabel.SHARE_ENCRYPTION, self._session, lo, hi)

    def _pair_mask_key(self, peer: str) -> bytes:
        shared = agree(self._s_sk, self._keys[peer].s_public)
        lo, hi = sorted((self._me, peer))
        return derive_key(shared, KeyLabel.PAIR_MASK, self._session, lo, hi)

    def mask(self, inbox: ShareInbox, update: Weights, num_samples: int) -> MaskedInput:
        """Phase 2: decrypt the shares dealt to this client, then mask its encoded update.

        Parameters
        ----------
        inbox
            The ciphertexts the server relayed; their senders are the neighbours that
            shared keys, and this client masks with exactly those.
        update
            The (clipped, possibly DP-noised) update, matching ``config.model``.
        num_samples
            The FedAvg weight, capped at ``fixed_point.max_weight``.

        Raises
        ------
        SecAggError
            ``INCONSISTENT_SHARE`` naming the sender of a share that fails AES-GCM
            authentication, is not addressed to this client or carries a bad signature;
            ``BAD_MESSAGE`` for a share from a non-neighbour; ``TOO_FEW_CLIENTS`` if fewer
            than ``threshold`` holders are left.
        """
        self._expect(ClientPhase.SHARED, "mask", inbox.session_id)
        if inbox.recipient != self._me:
            raise SecAggError(
                SecAggFailure.BAD_MESSAGE,
                f"share inbox is addressed to {inbox.recipient!r}, not to this client",
                node_id=self._me,
            )
        vector = self._cfg.fixed_point.encode(update, num_samples, self._cfg.model)
        senders: set[str] = set()
        for enc in inbox.shares:
            if enc.sender not in self._neighbours or enc.sender in senders:
                raise SecAggError(
                    SecAggFailure.BAD_MESSAGE,
                    "share inbox holds a share from a non-neighbour or two from one sender",
                    node_id=enc.sender,
                )
            self._held[enc.sender] = self._open_share(enc)
            senders.add(enc.sender)
        alive = len(senders) + 1
        if alive < self._cfg.threshold:
            raise SecAggError(
                SecAggFailure.TOO_FEW_CLIENTS,
                f"only {alive} client(s) of this neighbourhood shared keys, threshold is "
                f"{self._cfg.threshold}",
                node_id=self._me,
            )
        add_mask(
            vector, derive_key(self._self_mask_seed, KeyLabel.SELF_MASK, self._session, self._me)
        )
        for peer in sorted(senders):
            below = self._cfg.index(peer) < self._x
            add_mask(vector, self._pair_mask_key(peer), subtract=below)
        self._self_mask_seed = b""  # its shares are held by the neighbours now
        self._shared = frozenset(senders)
        self._phase = ClientPhase.MASKED
        return MaskedInput(self._cfg.session_id, self._me, vector)

    def _open_share(self, enc: EncryptedShare) -> SharePlaintext:
        sender = enc.sender

        def bad(why: str) -> SecAggError:
            return SecAggError(
                SecAggFailure.INCONSISTENT_SHARE,
                f"the share {sender!r} sent to {self._me!r} {why}",
                node_id=sender,
            )

        if enc.recipient != self._me:
            raise bad(f"is addressed to {enc.recipient!r}")
        try:
            raw = unseal(
                self._encryption_key(sender),
                enc.ciphertext,
                share_aad(self._session, sender, self._me),
            )
        except SecurityError as exc:
            raise bad("failed AES-GCM authentication") from exc
        try:
            plain = SharePlaintext.model_validate_json(raw)
        except ValidationError as exc:
            raise bad("is not a well-formed share") from exc
        if plain.owner != sender or plain.holder != self._me or plain.x != self._x:
            raise bad("names another owner, holder or coordinate")
        sign_pk = self._keys[sender].sign_public
        for kind, y, sig in (
            (ShareKind.KEY, plain.key_y, plain.key_signature),
            (ShareKind.MASK, plain.mask_y, plain.mask_signature),
        ):
            if not verify_signature(
                sign_pk, sig, share_statement(self._session, kind, sender, self._me, plain.x, y)
            ):
                raise bad(f"carries an invalid signature on its {kind} share")
        return plain

    def unmask(self, request: UnmaskRequest) -> UnmaskResponse:
        """Phase 3: reveal self-mask shares of survivors and mask-key shares of the dropped.

        Never reveals both secrets of one client: the request's sets must be disjoint, must
        account for every neighbour that shared keys, and are answered only once.

        Raises
        ------
        SecAggError
            ``BAD_MESSAGE`` if the request is inconsistent with what this client saw;
            ``TOO_FEW_CLIENTS`` if it names fewer than ``threshold`` survivors.
        """
        self._expect(ClientPhase.MASKED, "unmask", request.session_id)
        survivors, dropped = set(request.survivors), set(request.dropped)
        t = self._cfg.threshold
        if survivors & dropped or self._me not in survivors:
            raise SecAggError(
                SecAggFailure.BAD_MESSAGE,
                "unmask request lists a client as both survivor and dropped, or omits "
                "this client from the survivors",
            )
        if len(survivors) < t:
            raise SecAggError(
                SecAggFailure.TOO_FEW_CLIENTS,
                f"unmask request names {len(survivors)} survivor(s), threshold is {t}",
            )
        strangers = (survivors | dropped) & (self._neighbours - self._shared)
        if strangers:
            raise SecAggError(
                SecAggFailure.BAD_MESSAGE,
                f"unmask request names {sorted(strangers)}, which shared no keys with this client",
            )
        mask_out: list[RevealedShare] = []
        key_out: list[RevealedShare] = []
        for owner in sorted(self._shared | {self._me}):
            plain = self._held[owner]
            if owner in survivors:
                mask_out.append(
                    RevealedShare(
                        owner=owner, x=plain.x, y=plain.mask_y, signature=plain.mask_signature
                    )
                )
            elif owner in dropped:
                key_out.append(
                    RevealedShare(
                        owner=owner, x=plain.x, y=plain.key_y, signature=plain.key_signature
                    )
                )
            else:
                raise SecAggError(
                    SecAggFailure.BAD_MESSAGE,
                    f"unmask request does not say whether {owner!r} survived",
                )
        self._held.clear()
        self._phase = ClientPhase.DONE
        return UnmaskResponse(
            session_id=self._cfg.session_id,
            node_id=self._me,
            mask_shares=tuple(mask_out),
            key_shares=tuple(key_out),
        )
