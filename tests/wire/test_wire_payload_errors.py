"""Refusals of malformed payloads: headers, chunks, digests and expected tensor specs."""

from __future__ import annotations

import numpy as np
import pytest

from clawfed.core import ConfigError, PayloadError, RejectReason, TensorSpec, Weights
from clawfed.wire import EncodedPayload, Reassembler, decode, encode
from clawfed.wire._proto import federation_pb2 as pb

LIMIT = 1 << 20


def sample() -> EncodedPayload:
    w = Weights(
        [
            ("dense.weight", np.arange(1000, dtype=np.float32).reshape(10, 100)),
            ("dense.bias", np.arange(10, dtype=np.float64)),
        ]
    )
    return encode(w, "pl-1", chunk_size=1024)  # 4080 bytes -> 4 chunks


def header_copy(enc: EncodedPayload) -> pb.PayloadHeader:
    h = pb.PayloadHeader()
    h.CopyFrom(enc.header)
    return h


def reason_of(exc: pytest.ExceptionInfo[PayloadError]) -> RejectReason:
    return exc.value.reason


# ---- chunks --------------------------------------------------------------------------


def test_flipped_byte_is_a_digest_mismatch() -> None:
    enc = sample()
    chunks = list(enc.chunks())
    data = bytearray(chunks[2].data)
    data[17] ^= 0x01
    chunks[2] = pb.Chunk(payload_id="pl-1", offset=chunks[2].offset, data=bytes(data))
    r = Reassembler(enc.header, max_total_bytes=LIMIT)
    for c in chunks:
        r.add(c)
    assert r.done
    with pytest.raises(PayloadError) as exc:
        r.finish()
    assert reason_of(exc) is RejectReason.DIGEST_MISMATCH
    assert enc.header.sha256.hex() in str(exc.value)


def test_wrong_digest_in_header_is_a_digest_mismatch() -> None:
    enc = sample()
    h = header_copy(enc)
    h.sha256 = bytes(32)
    with pytest.raises(PayloadError) as exc:
        decode(h, enc.chunks(), max_total_bytes=LIMIT)
    assert reason_of(exc) is RejectReason.DIGEST_MISMATCH


def test_missing_last_chunk_is_truncated() -> None:
    enc = sample()
    r = Reassembler(enc.header, max_total_bytes=LIMIT)
    for c in list(enc.chunks())[:-1]:
        r.add(c)
    assert not r.done
    assert r.received_bytes == 3072
    with pytest.raises(PayloadError, match="received 3072 of 4080") as exc:
        r.finish()
    assert reason_of(exc) is RejectReason.TRUNCATED


def test_extra_chunk_after_the_end_is_oversize() -> None:
    enc = sample()
    r = Reassembler(enc.header, max_total_bytes=LIMIT)
    for c in enc.chunks():
        r.add(c)
    with pytest.raises(PayloadError, match="message larger than announced") as exc:
        r.add(pb.Chunk(payload_id="pl-1", offset=4080, data=b"\x00"))
    assert reason_of(exc) is RejectReason.OVERSIZE
    assert r.finish()["dense.bias"][9] == 9.0  # the refused chunk changed nothing


def test_chunk_running_past_the_end_is_oversize() -> None:
    enc = sample()
    chunks = list(enc.chunks())
    last = chunks[-1]
    r = Reassembler(enc.header, max_total_bytes=LIMIT)
    for c in chunks[:-1]:
        r.add(c)
    with pytest.raises(PayloadError, match="runs past total_bytes=4080") as exc:
        r.add(pb.Chunk(payload_id="pl-1", offset=last.offset, data=last.data + b"\x00"))
    assert reason_of(exc) is RejectReason.OVERSIZE
    assert r.received_bytes == 3072


def test_out_of_order_chunk_is_refused_and_changes_nothing() -> None:
    enc = sample()
    chunks = list(enc.chunks())
    r = Reassembler(enc.header, max_total_bytes=LIMIT)
    r.add(chunks[0])
    with pytest.raises(PayloadError, match="expected offset 1024, got 2048") as exc:
        r.add(chunks[2])
    assert reason_of(exc) is RejectReason.BAD_CHUNK
    with pytest.raises(PayloadError) as exc:
        r.add(chunks[0])  # a duplicate is out of order too
    assert reason_of(exc) is RejectReason.BAD_CHUNK
    assert r.received_bytes == 1024
    for c in chunks[1:]:
        r.add(c)
    np.testing.assert_array_equal(r.finish()["dense.bias"], np.arange(10.0))


def test_wrong_payload_id_is_a_bad_chunk() -> None:
    enc = sample()
    first = next(enc.chunks())
    r = Reassembler(enc.header, max_total_bytes=LIMIT)
    with pytest.raises(PayloadError, match="'other'") as exc:
        r.add(pb.Chunk(payload_id="other", offset=0, data=first.data))
    assert reason_of(exc) is RejectReason.BAD_CHUNK
    assert r.received_bytes == 0


def test_empty_chunk_is_a_bad_chunk() -> None:
    enc = sample()
    r = Reassembler(enc.header, max_total_bytes=LIMIT)
    with pytest.raises(PayloadError, match="empty") as exc:
        r.add(pb.Chunk(payload_id="pl-1", offset=0, data=b""))
    assert reason_of(exc) is RejectReason.BAD_CHUNK


# ---- headers -------------------------------------------------------------------------


def test_unknown_dtype_is_a_bad_header() -> None:
    for dtype in ("complex64", "object", "", "float32 ", "<f4"):
        h = header_copy(sample())
        h.tensors[1].dtype = dtype
        with pytest.raises(PayloadError, match="dtype must be one of") as exc:
            Reassembler(h, max_total_bytes=LIMIT)
        assert reason_of(exc) is RejectReason.BAD_HEADER


def test_shape_inconsistent_with_total_is_a_bad_header() -> None:
    h = header_copy(sample())
    h.tensors[0].shape[1] = 101
    with pytest.raises(PayloadError, match=r"sum of the tensor sizes \(4120\), got 4080") as exc:
        Reassembler(h, max_total_bytes=LIMIT)
    assert reason_of(exc) is RejectReason.BAD_HEADER

    h = header_copy(sample())
    h.total_bytes = 4079
    with pytest.raises(PayloadError) as exc:
        Reassembler(h, max_total_bytes=LIMIT)
    assert reason_of(exc) is RejectReason.BAD_HEADER


def test_duplicate_and_empty_names_are_bad_headers() -> None:
    h = header_copy(sample())
    h.tensors[1].name = "dense.weight"
    with pytest.raises(PayloadError, match="'dense.weight' appears twice") as exc:
        Reassembler(h, max_total_bytes=LIMIT)
    assert reason_of(exc) is RejectReason.BAD_HEADER

    h = header_copy(sample())
    h.tensors[0].name = ""
    with pytest.raises(PayloadError, match="tensor #0: name must not be empty") as exc:
        Reassembler(h, max_total_bytes=LIMIT)
    assert reason_of(exc) is RejectReason.BAD_HEADER


def test_bad_digest_length_and_empty_payload_id_are_bad_headers() -> None:
    h = header_copy(sample())
    h.sha256 = bytes(31)
    with pytest.raises(PayloadError, match="sha256 must be 32 bytes, got 31") as exc:
        Reassembler(h, max_total_bytes=LIMIT)
    assert reason_of(exc) is RejectReason.BAD_HEADER

    h = header_copy(sample())
    h.payload_id = ""
    with pytest.raises(PayloadError, match="payload_id must not be empty") as exc:
        Reassembler(h, max_total_bytes=LIMIT)
    assert reason_of(exc) is RejectReason.BAD_HEADER


def test_oversize_total_is_refused_before_allocating() -> None:
    enc = sample()
    with pytest.raises(PayloadError, match="announces 4080 bytes, the limit is 4079") as exc:
        Reassembler(enc.header, max_total_bytes=4079)
    assert reason_of(exc) is RejectReason.OVERSIZE
    Reassembler(enc.header, max_total_bytes=4080)  # the limit itself is allowed

    huge = pb.PayloadHeader(
        payload_id="x",
        tensors=[pb.TensorHeader(name="w", dtype="float32", shape=[1 << 40])],
        total_bytes=1 << 42,
        sha256=bytes(32),
    )
    with pytest.raises(PayloadError) as exc:
        Reassembler(huge, max_total_bytes=LIMIT)
    assert reason_of(exc) is RejectReason.OVERSIZE


def test_shapes_numpy_cannot_hold_are_bad_headers() -> None:
    too_wide = pb.PayloadHeader(
        payload_id="x",
        tensors=[pb.TensorHeader(name="w", dtype="float64", shape=[0, 1 << 40, 1 << 40])],
        total_bytes=0,
        sha256=bytes(32),
    )
    with pytest.raises(PayloadError, match="too large for numpy") as exc:
        Reassembler(too_wide, max_total_bytes=LIMIT)
    assert reason_of(exc) is RejectReason.BAD_HEADER

    too_deep = pb.PayloadHeader(
        payload_id="x",
        tensors=[pb.TensorHeader(name="w", dtype="uint8", shape=[1] * 65)],
        total_bytes=1,
        sha256=bytes(32),
    )
    with pytest.raises(PayloadError, match="at most 64 dimensions, got 65") as exc:
        Reassembler(too_deep, max_total_bytes=LIMIT)
    assert reason_of(exc) is RejectReason.BAD_HEADER


def test_hostile_long_names_are_cut_in_messages() -> None:
    h = header_copy(sample())
    h.tensors[0].name = "x" * 10_000
    h.tensors[0].dtype = "complex128"
    with pytest.raises(PayloadError) as exc:
        Reassembler(h, max_total_bytes=LIMIT)
    assert len(str(exc.value)) < 400


@pytest.mark.parametrize("bad", [0, -5, True, 1.5])
def test_max_total_bytes_must_be_positive_int(bad: object) -> None:
    with pytest.raises(ConfigError, match="max_total_bytes must be an int > 0"):
        Reassembler(sample().header, max_total_bytes=bad)  # type: ignore[arg-type]


# ---- expected tensor specs -----------------------------------------------------------

SPEC = (
    TensorSpec("dense.weight", "float32", (10, 100)),
    TensorSpec("dense.bias", "float64", (10,)),
)


def test_matching_expected_spec_in_any_order_is_accepted() -> None:
    enc = sample()
    out = decode(enc.header, enc.chunks(), max_total_bytes=LIMIT, expected=SPEC[::-1])
    assert list(out) == ["dense.weight", "dense.bias"]


@pytest.mark.parametrize(
    ("expected", "reason", "words"),
    [
        (SPEC[:1], RejectReason.UNKNOWN_TENSOR, "unknown tensor 'dense.bias'"),
        (
            (*SPEC, TensorSpec("dense2.bias", "float32", (4,))),
            RejectReason.MISSING_TENSOR,
            "missing tensor(s): 'dense2.bias'",
        ),
        (
            (SPEC[0], TensorSpec("dense.bias", "float64", (11,))),
            RejectReason.SHAPE_MISMATCH,
            "has shape (10,), expected (11,)",
        ),
        (
            (SPEC[0], TensorSpec("dense.bias", "float32", (10,))),
            RejectReason.DTYPE_MISMATCH,
            "has dtype float64, expected float32",
        ),
    ],
)
def test_expected_spec_mismatch(
    expected: tuple[TensorSpec, ...], reason: RejectReason, words: str
) -> None:
    with pytest.raises(PayloadError) as exc:
        Reassembler(sample().header, max_total_bytes=LIMIT, expected=expected)
    assert exc.value.reason is reason
    assert words in str(exc.value)
