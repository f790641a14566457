"""Cryptographic building blocks of secure aggregation, all from ``cryptography``.

- key agreement: X25519; the raw shared secret is never used directly but through
  HKDF-SHA256 with a label, the session digest and both client ids (domain separation);
- share encryption: AES-256-GCM with a random 96-bit nonce and the session, sender and
  recipient bound as associated data;
- share signatures: Ed25519 with a per-session key, so a revealed share can be traced to
  the client that dealt it;
- mask expansion (the PRG): the AES-256-CTR keystream under the full 256-bit HKDF output,
  read as little-endian uint32 / uint64 words and added into the ring Z_{2^k} blockwise.
"""

from __future__ import annotations

import hashlib
import os
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from clawfed.core import SecurityError

KEY_BYTES = 32
NONCE_BYTES = 12
SIGNATURE_BYTES = 64
_PRG_BLOCK_WORDS = 1 << 18  # words expanded per block: bounds temporaries to 2 MiB
_LABEL_PREFIX = b"clawfed/secagg/v1/"

RingArray = npt.NDArray[np.unsignedinteger[Any]]


class KeyLabel(StrEnum):
    """What a derived key is for; every purpose gets its own HKDF ``info``."""

    SHARE_ENCRYPTION = "share-encryption"
    PAIR_MASK = "pair-mask"
    SELF_MASK = "self-mask"


def x25519_pair() -> tuple[X25519PrivateKey, bytes]:
    """A fresh X25519 key pair: the private key and the 32 raw public-key bytes."""
    sk = X25519PrivateKey.generate()
    return sk, sk.public_key().public_bytes_raw()


def x25519_from_secret(secret: bytes) -> tuple[X25519PrivateKey, bytes]:
    """The X25519 key pair whose raw private bytes are ``secret`` (32 bytes)."""
    if len(secret) != KEY_BYTES:
        raise SecurityError(f"an X25519 private key is {KEY_BYTES} bytes, got {len(secret)}")
    sk = X25519PrivateKey.from_private_bytes(secret)
    return sk, sk.public_key().public_bytes_raw()


def agree(sk: X25519PrivateKey, peer_public: bytes) -> bytes:
    """The raw X25519 shared secret of ``sk`` and the peer's 32-byte public key.

    Raises
    ------
    SecurityError
        If the peer key is malformed or of low order (an all-zero shared secret).
    """
    if len(peer_public) != KEY_BYTES:
        raise SecurityError(
            f"an X25519 public key is {KEY_BYTES} bytes, got {len(peer_public)} bytes"
        )
    try:
        return sk.exchange(X25519PublicKey.from_public_bytes(peer_public))
    except ValueError as exc:
        raise SecurityError(f"X25519 agreement failed: {exc}") from exc


def derive_key(secret: bytes, label: KeyLabel, session: bytes, *parties: str) -> bytes:
    """A 256-bit key from ``secret`` by HKDF-SHA256, bound to ``label``, session and parties.

    Pairwise keys must be symmetric, so callers pass the two client ids sorted.
    """
    info = _LABEL_PREFIX + label.value.encode() + b"".join(_field(p.encode()) for p in parties)
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=session, info=info).derive(secret)


def _field(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def statement(*parts: bytes) -> bytes:
    """An unambiguous byte string of several fields (each length-prefixed), for AAD and signing."""
    return b"".join(_field(p) for p in parts)


def seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """AES-256-GCM encryption: a random nonce followed by ciphertext and tag."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def unseal(key: bytes, blob: bytes, aad: bytes) -> bytes:
    """Decrypt what ``seal`` made; ``SecurityError`` if it was altered or is for other AAD."""
    if len(blob) < NONCE_BYTES + 16:
        raise SecurityError(f"ciphertext of {len(blob)} bytes is too short to be AES-GCM")
    try:
        return AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
    except InvalidTag as exc:
        raise SecurityError("AES-GCM authentication failed") from exc


def ed25519_pair() -> tuple[Ed25519PrivateKey, bytes]:
    """A fresh Ed25519 signing key and its 32 raw public-key bytes."""
    sk = Ed25519PrivateKey.generate()
    return sk, sk.public_key().public_bytes_raw()


def ed25519_from_secret(secret: bytes) -> tuple[Ed25519PrivateKey, bytes]:
    """The Ed25519 signing key whose 32-byte seed is ``secret``, and its public bytes."""
    if len(secret) != KEY_BYTES:
        raise SecurityError(f"an Ed25519 private key is {KEY_BYTES} bytes, got {len(secret)}")
    sk = Ed25519PrivateKey.from_private_bytes(secret)
    return sk, sk.public_key().public_bytes_raw()


def verify_signature(public: bytes, signature: bytes, message: bytes) -> bool:
    """Whether ``signature`` is a valid Ed25519 signature of ``message`` under ``public``."""
    if len(public) != KEY_BYTES or len(signature) != SIGNATURE_BYTES:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def commitment(session: bytes, owner: str, secret: bytes) -> bytes:
    """SHA-256 commitment to a 256-bit random secret (hiding because the secret is random)."""
    return hashlib.sha256(
        statement(_LABEL_PREFIX + b"commit", session, owner.encode(), secret)
    ).digest()


def ring_dtype(ring_bits: int) -> np.dtype[np.unsignedinteger[Any]]:
    """The unsigned numpy dtype of the ring Z_{2^ring_bits} (32 or 64)."""
    if ring_bits == 32:
        return np.dtype(np.uint32)
    if ring_bits == 64:
        return np.dtype(np.uint64)
    raise SecurityError(f"ring_bits must be 32 or 64, got {ring_bits}")


def add_mask(acc: RingArray, key: bytes, *, subtract: bool = False) -> None:
    """``acc += PRG(key)`` (or ``-=``) in place, modulo 2^k, blockwise.

    The PRG is the AES-256-CTR keystream of ``key`` (32 bytes) from a zero counter; each key
    is derived per session and purpose, so no (key, counter) pair is ever used twice.
    """
    if len(key) != KEY_BYTES:
        raise SecurityError(f"a mask key is {KEY_BYTES} bytes, got {len(key)}")
    flat = acc.reshape(-1)
    words = flat.size
    itemsize = flat.dtype.itemsize
    encryptor = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()
    zeros = bytes(min(words, _PRG_BLOCK_WORDS) * itemsize)
    le = flat.dtype.newbyteorder("<")
    for start in range(0, words, _PRG_BLOCK_WORDS):
        stop = min(start + _PRG_BLOCK_WORDS, words)
        n = stop - start
        block = np.frombuffer(encryptor.update(zeros[: n * itemsize]), dtype=le)
        if subtract:
            np.subtract(flat[start:stop], block, out=flat[start:stop], casting="unsafe")
        else:
            np.add(flat[start:stop], block, out=flat[start:stop], casting="unsafe")


def mask_vector(key: bytes, length: int, ring_bits: int) -> RingArray:
    """The PRG output of ``key`` as ``length`` ring elements (for tests and analysis)."""
    out: RingArray = np.zeros(length, dtype=ring_dtype(ring_bits))
    add_mask(out, key)
    return out
