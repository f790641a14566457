"""Building blocks of secure aggregation: key agreement, HKDF, AES-GCM, the PRG, signatures."""

from __future__ import annotations

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from clawfed.core import SecurityError
from clawfed.privacy.secagg_crypto import (
    KeyLabel,
    add_mask,
    agree,
    commitment,
    derive_key,
    ed25519_pair,
    mask_vector,
    ring_dtype,
    seal,
    unseal,
    verify_signature,
    x25519_from_secret,
    x25519_pair,
)

SESSION = b"s" * 32


def test_agreement_is_symmetric_and_keys_are_domain_separated() -> None:
    a_sk, a_pk = x25519_pair()
    b_sk, b_pk = x25519_pair()
    shared = agree(a_sk, b_pk)
    assert shared == agree(b_sk, a_pk)
    k_enc = derive_key(shared, KeyLabel.SHARE_ENCRYPTION, SESSION, "a", "b")
    k_mask = derive_key(shared, KeyLabel.PAIR_MASK, SESSION, "a", "b")
    assert len(k_enc) == 32 and k_enc != k_mask
    assert k_mask != derive_key(shared, KeyLabel.PAIR_MASK, b"t" * 32, "a", "b")
    # length prefixes: ("ab", "c") and ("a", "bc") give different keys
    assert derive_key(shared, KeyLabel.PAIR_MASK, SESSION, "ab", "c") != derive_key(
        shared, KeyLabel.PAIR_MASK, SESSION, "a", "bc"
    )


def test_low_order_or_malformed_public_keys_are_refused() -> None:
    sk, _ = x25519_pair()
    with pytest.raises(SecurityError, match="agreement failed"):
        agree(sk, bytes(32))  # the all-zero point yields an all-zero secret
    with pytest.raises(SecurityError, match="32 bytes"):
        agree(sk, bytes(31))


def test_private_key_round_trips_through_its_raw_bytes() -> None:
    sk, pk = x25519_pair()
    again, pk2 = x25519_from_secret(sk.private_bytes_raw())
    assert pk2 == pk


def test_seal_detects_tampering_and_foreign_context() -> None:
    key = bytes(range(32))
    blob = seal(key, b"share", b"aad")
    assert unseal(key, blob, b"aad") == b"share"
    assert seal(key, b"share", b"aad") != blob  # fresh nonce each time
    with pytest.raises(SecurityError, match="authentication"):
        unseal(key, blob, b"other aad")
    with pytest.raises(SecurityError, match="authentication"):
        unseal(key, blob[:-1] + bytes([blob[-1] ^ 1]), b"aad")
    with pytest.raises(SecurityError, match="too short"):
        unseal(key, b"x", b"aad")


def test_signatures_verify_only_the_signed_message() -> None:
    sk, pk = ed25519_pair()
    sig = sk.sign(b"m")
    assert verify_signature(pk, sig, b"m")
    assert not verify_signature(pk, sig, b"n")
    assert not verify_signature(pk, sig[:-1], b"m")
    assert not verify_signature(ed25519_pair()[1], sig, b"m")


def test_prg_is_the_aes_ctr_keystream_read_little_endian() -> None:
    key = bytes(range(32))
    out = mask_vector(key, 1000, 32)
    ref = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor().update(bytes(4000))
    assert np.array_equal(out, np.frombuffer(ref, dtype="<u4"))


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 600_000), bits=st.sampled_from([32, 64]))
def test_masks_cancel_and_do_not_depend_on_block_boundaries(n: int, bits: int) -> None:
    key = b"k" * 32
    acc = np.arange(n, dtype=ring_dtype(bits))
    add_mask(acc, key)
    full = mask_vector(key, n, bits)
    assert np.array_equal(acc - full, np.arange(n, dtype=ring_dtype(bits)))
    add_mask(acc, key, subtract=True)
    assert np.array_equal(acc, np.arange(n, dtype=ring_dtype(bits)))


def test_commitment_binds_owner_session_and_secret() -> None:
    c = commitment(SESSION, "a", b"x" * 32)
    assert c != commitment(SESSION, "b", b"x" * 32)
    assert c != commitment(b"t" * 32, "a", b"x" * 32)
    assert c != commitment(SESSION, "a", b"y" * 32)


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(SecurityError):
        add_mask(np.zeros(3, np.uint32), b"short")
    with pytest.raises(SecurityError):
        ring_dtype(16)
    with pytest.raises(SecurityError):
        x25519_from_secret(b"short")
