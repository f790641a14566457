"""The typed messages of secure aggregation, as the coordinator relays them over the stream.

Control messages are frozen pydantic models that travel as JSON (``encode_message`` /
``decode_message``; bytes fields in URL-safe base64). The masked input is a ring vector and
travels as a tensor payload (``MaskedInput.to_weights``), chunked like any model update.

Per phase (C = client, S = server/coordinator):

====================  =========================  ===========================================
phase                 C → S                      S → C
====================  =========================  ===========================================
0 advertise keys      ``AdvertiseKeys``          ``KeyDirectory`` (same for every client)
1 share keys          ``ShareKeys``              ``ShareInbox`` (one per recipient)
2 masked input        ``MaskedInput`` (tensor)   ``UnmaskRequest`` (same for every client)
3 unmasking           ``UnmaskResponse``         — (the server computes the sum)
====================  =========================  ===========================================
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from clawfed.core import Weights
from clawfed.privacy.errors import SecAggError, SecAggFailure
from clawfed.privacy.secagg_crypto import (
    KEY_BYTES,
    SIGNATURE_BYTES,
    RingArray,
    ring_dtype,
    statement,
)
from clawfed.privacy.shamir import ELEMENT_BYTES

NodeId = Annotated[str, Field(min_length=1, max_length=256)]
Key = Annotated[bytes, Field(min_length=KEY_BYTES, max_length=KEY_BYTES)]
Signature = Annotated[bytes, Field(min_length=SIGNATURE_BYTES, max_length=SIGNATURE_BYTES)]
Element = Annotated[bytes, Field(min_length=ELEMENT_BYTES, max_length=ELEMENT_BYTES)]
#: Most entries one message may list (clients in a session).
MAX_CLIENTS = 100_000


class _Frozen(BaseModel):
    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        strict=True,
        ser_json_bytes="base64",
        val_json_bytes="base64",
    )


class AdvertiseKeys(_Frozen):
    """Phase 0, C → S: a client's public keys for this session.

    ``c_public`` (X25519) agrees the keys that encrypt shares, ``s_public`` (X25519) the
    pairwise mask seeds, ``sign_public`` (Ed25519) verifies the shares the client deals.
    In the honest-but-curious server model this message needs no signature: mutual TLS
    authenticates the client to the coordinator, which relays keys faithfully. Against an
    actively malicious server the client would sign it with its PKI certificate key.
    """

    kind: Literal["advertise_keys"] = "advertise_keys"
    session_id: str
    node_id: NodeId
    c_public: Key
    s_public: Key
    sign_public: Key


class KeyDirectory(_Frozen):
    """Phase 0, S → every client that advertised: all advertised keys and a fresh nonce."""

    kind: Literal["key_directory"] = "key_directory"
    session_id: str
    nonce: Key
    keys: tuple[AdvertiseKeys, ...] = Field(max_length=MAX_CLIENTS)

    def key_material(self) -> bytes:
        """Every advertised key in node-id order, for the public graph seed."""
        out = bytearray()
        for k in sorted(self.keys, key=lambda a: a.node_id):
            out += k.node_id.encode() + b"\x00" + k.c_public + k.s_public + k.sign_public
        return bytes(out)


class EncryptedShare(_Frozen):
    """One AES-GCM ciphertext of a ``SharePlaintext`` from ``sender`` to ``recipient``."""

    sender: NodeId
    recipient: NodeId
    ciphertext: bytes = Field(max_length=4096)


class ShareKeys(_Frozen):
    """Phase 1, C → S: a commitment to the self-mask seed and one ciphertext per holder."""

    kind: Literal["share_keys"] = "share_keys"
    session_id: str
    node_id: NodeId
    commitment: Key
    shares: tuple[EncryptedShare, ...] = Field(max_length=MAX_CLIENTS)


class ShareInbox(_Frozen):
    """Phase 1, S → one client: the ciphertexts addressed to it by clients that shared keys.

    The senders are exactly the recipient's neighbours that survived phase 1.
    """

    kind: Literal["share_inbox"] = "share_inbox"
    session_id: str
    recipient: NodeId
    shares: tuple[EncryptedShare, ...] = Field(max_length=MAX_CLIENTS)


class SharePlaintext(_Frozen):
    """What a ciphertext holds: ``holder``'s shares of ``owner``'s two secrets, signed.

    ``key_y`` shares the private key behind ``s_public``; ``mask_y`` the self-mask seed.
    Each signature (by ``owner``'s ``sign_public``) covers session, kind, owner, holder and
    the share, so a holder cannot later reveal a share other than the one it was dealt.
    """

    owner: NodeId
    holder: NodeId
    x: int = Field(ge=1, le=MAX_CLIENTS)
    key_y: Element
    mask_y: Element
    key_signature: Signature
    mask_signature: Signature


class UnmaskRequest(_Frozen):
    """Phase 2, S → every client that sent a masked input.

    ``survivors`` sent masked inputs (their self-mask shares are wanted); ``dropped`` shared
    keys but sent no masked input (their mask-key shares are wanted). The sets are disjoint.
    """

    kind: Literal["unmask_request"] = "unmask_request"
    session_id: str
    survivors: tuple[NodeId, ...] = Field(max_length=MAX_CLIENTS)
    dropped: tuple[NodeId, ...] = Field(max_length=MAX_CLIENTS)


class RevealedShare(_Frozen):
    """A holder's share of ``owner``'s secret, with the owner's signature over it."""

    owner: NodeId
    x: int = Field(ge=1, le=MAX_CLIENTS)
    y: Element
    signature: Signature


class UnmaskResponse(_Frozen):
    """Phase 3, C → S: self-mask shares of survivors and mask-key shares of dropped clients."""

    kind: Literal["unmask_response"] = "unmask_response"
    session_id: str
    node_id: NodeId
    mask_shares: tuple[RevealedShare, ...] = Field(max_length=MAX_CLIENTS)
    key_shares: tuple[RevealedShare, ...] = Field(max_length=MAX_CLIENTS)


#: Any control message of the protocol.
ControlMessage = Annotated[
    AdvertiseKeys | KeyDirectory | ShareKeys | ShareInbox | UnmaskRequest | UnmaskResponse,
    Field(discriminator="kind"),
]
_CONTROL: TypeAdapter[ControlMessage] = TypeAdapter(ControlMessage)


def encode_message(message: ControlMessage) -> bytes:
    """The JSON bytes of a control message."""
    return message.model_dump_json().encode()


def decode_message(data: bytes, *, sender: str | None = None) -> ControlMessage:
    """Parse and validate a control message; ``SecAggError(BAD_MESSAGE)`` naming ``sender``."""
    try:
        return _CONTROL.validate_json(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'message'}: {e['msg']}"
            for e in exc.errors()[:5]
        )
        raise SecAggError(
            SecAggFailure.BAD_MESSAGE, f"malformed control message: {problems}", node_id=sender
        ) from exc


@dataclass(frozen=True, eq=False)
class MaskedInput:
    """Phase 2, C → S: the masked ring vector ``y_u`` of one client."""

    session_id: str
    node_id: str
    vector: RingArray

    #: Name of the single tensor that carries the vector in a payload.
    TENSOR = "secagg/masked"

    def to_weights(self) -> Weights:
        """The vector as a one-tensor payload (reinterpreted as int32/int64: same bytes)."""
        signed = np.int32 if self.vector.dtype == np.uint32 else np.int64
        return Weights({self.TENSOR: self.vector.view(signed)})

    @classmethod
    def from_weights(
        cls, session_id: str, node_id: str, weights: Weights, ring_bits: int
    ) -> MaskedInput:
        """Read what ``to_weights`` made; ``SecAggError(BAD_MESSAGE)`` if it does not fit."""
        arr = weights.get(cls.TENSOR)
        want = np.dtype(np.int32 if ring_bits == 32 else np.int64)
        if len(weights) != 1 or arr is None or arr.dtype != want or arr.ndim != 1:
            raise SecAggError(
                SecAggFailure.BAD_MESSAGE,
                f"a masked input is one 1-D {want.name} tensor named {cls.TENSOR!r}, got "
                f"{weights!r}",
                node_id=node_id,
            )
        vector: RingArray = np.ascontiguousarray(arr).view(ring_dtype(ring_bits))
        return cls(session_id, node_id, vector)


class ShareKind(StrEnum):
    """Which of a client's two secrets a share belongs to."""

    KEY = "key"  # the private key behind ``s_public`` (pairwise mask seeds)
    MASK = "mask"  # the self-mask seed ``b``


def share_statement(
    session: bytes, kind: ShareKind, owner: str, holder: str, x: int, y: bytes
) -> bytes:
    """The bytes an owner signs for one share it deals to ``holder``."""
    return statement(
        b"clawfed/secagg/v1/share",
        session,
        kind.value.encode(),
        owner.encode(),
        holder.encode(),
        x.to_bytes(8, "big"),
        y,
    )
