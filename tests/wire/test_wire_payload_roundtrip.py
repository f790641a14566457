"""Round trips of tensor payloads: any tensors, any chunk size, bit-exact, one buffer."""

from __future__ import annotations

import hashlib

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from clawfed.core import ConfigError, PayloadError, RejectReason, Weights
from clawfed.core.weights import WIRE_DTYPES
from clawfed.wire import MAX_CHUNK_SIZE, MIN_CHUNK_SIZE, EncodedPayload, Reassembler, decode, encode

Array = npt.NDArray[np.generic]


def le_bytes(a: Array) -> bytes:
    """The raw little-endian C-order bytes of ``a``, computed independently of the codec."""
    return np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes()


def reassemble(enc: EncodedPayload) -> tuple[Reassembler, Weights]:
    r = Reassembler(enc.header, max_total_bytes=max(enc.total_bytes, 1))
    for c in enc.chunks():
        r.add(c)
    assert r.done
    return r, r.finish()


@st.composite
def tensors(draw: st.DrawFn) -> Array:
    base = np.dtype(draw(st.sampled_from(sorted(WIRE_DTYPES))))
    dtype = base.newbyteorder(draw(st.sampled_from("<>"))) if base.itemsize > 1 else base
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=24))
    arr: Array = draw(hnp.arrays(dtype, shape))
    layout = draw(st.sampled_from(["c", "transposed", "strided"]))
    if layout == "transposed" and arr.ndim >= 2:
        arr = arr.T
    elif layout == "strided" and arr.ndim >= 1:
        arr = arr[::2]
    return arr


@st.composite
def weights(draw: st.DrawFn) -> Weights:
    arrays = draw(st.lists(tensors(), min_size=0, max_size=6))
    return Weights((f"layer{i}.w", a) for i, a in enumerate(arrays))


@settings(max_examples=250, deadline=None)
@given(
    w=weights(),
    chunk_size=st.one_of(
        st.sampled_from([MIN_CHUNK_SIZE, MIN_CHUNK_SIZE + 1, 1536, 4096]),
        st.integers(MIN_CHUNK_SIZE, 8 * MIN_CHUNK_SIZE),
    ),
)
def test_any_tensors_round_trip_bit_exactly(w: Weights, chunk_size: int) -> None:
    enc = encode(w, "job-1/round-3/global", chunk_size=chunk_size)
    wire = b"".join(le_bytes(a) for a in w.values())

    assert enc.total_bytes == len(wire) == w.nbytes
    assert enc.header.sha256 == hashlib.sha256(wire).digest()
    assert [t.name for t in enc.header.tensors] == list(w)
    assert [t.dtype for t in enc.header.tensors] == [a.dtype.name for a in w.values()]
    assert [tuple(t.shape) for t in enc.header.tensors] == [a.shape for a in w.values()]

    chunks = list(enc.chunks())
    assert len(chunks) == enc.num_chunks == -(-len(wire) // chunk_size)
    pos = 0
    for i, c in enumerate(chunks):
        assert c.payload_id == "job-1/round-3/global"
        assert c.offset == pos
        assert 0 < len(c.data) <= chunk_size
        if i < len(chunks) - 1:
            assert len(c.data) == chunk_size
        pos += len(c.data)
    assert b"".join(c.data for c in chunks) == wire

    _, out = reassemble(enc)
    assert list(out) == list(w)
    for name, a in w.items():
        b = out[name]
        assert b.dtype.name == a.dtype.name
        assert b.dtype.isnative
        assert b.shape == a.shape
        assert le_bytes(b) == le_bytes(a)  # bit-exact, NaN payloads included


def test_chunks_straddle_tensor_boundaries() -> None:
    w = Weights(
        [
            ("a", np.arange(300, dtype=np.float32)),  # 1200 bytes: ends inside chunk 2
            ("b", np.array(7, dtype=np.int8)),  # 0-d, 1 byte
            ("c", np.zeros((0, 5), dtype=np.float64)),  # empty
            ("d", np.arange(211, dtype=np.int64)),  # 1688 bytes
        ]
    )
    enc = encode(w, "p", chunk_size=1024)
    sizes = [len(c.data) for c in enc.chunks()]
    assert sizes == [1024, 1024, 841]
    out = decode(enc.header, enc.chunks(), max_total_bytes=1 << 20)
    assert int(out["b"]) == 7 and out["b"].shape == ()
    assert out["c"].shape == (0, 5)
    np.testing.assert_array_equal(out["a"], w["a"])
    np.testing.assert_array_equal(out["d"], w["d"])


def test_empty_payload_has_no_chunks_and_finishes_at_once() -> None:
    for w in (Weights(), Weights([("e", np.zeros((3, 0), dtype=np.float32))])):
        enc = encode(w, "empty")
        assert enc.total_bytes == 0
        assert list(enc.chunks()) == []
        r = Reassembler(enc.header, max_total_bytes=1)
        assert r.done and r.received_bytes == 0
        out = r.finish()
        assert [(n, a.shape) for n, a in out.items()] == [(n, a.shape) for n, a in w.items()]


def test_big_endian_input_comes_out_equal_in_value_and_native() -> None:
    rng = np.random.default_rng(0)
    native = rng.standard_normal((17, 33)).astype(np.float64)
    big = native.astype(">f8")
    ints = np.arange(-500, 500, dtype=">i4").reshape(10, 100)
    half = rng.standard_normal(999).astype(">f2")
    enc = encode(Weights([("f", big), ("i", ints), ("h", half)]), "be", chunk_size=1024)
    out = decode(enc.header, enc.chunks(), max_total_bytes=1 << 20)
    for name, src in (("f", big), ("i", ints), ("h", half)):
        assert out[name].dtype.isnative
        assert out[name].dtype.name == src.dtype.name
        np.testing.assert_array_equal(out[name], src)
    # the wire holds little-endian bytes whatever the input's byte order
    assert b"".join(c.data for c in enc.chunks())[:8] == native.astype("<f8").tobytes()[:8]


def test_encode_leaves_the_source_alone_and_reads_it_without_copying() -> None:
    a = np.arange(4096, dtype=np.float32)
    before = a.copy()
    enc = encode(Weights([("a", a)]), "p", chunk_size=1024)
    out = decode(enc.header, enc.chunks(), max_total_bytes=1 << 20)
    np.testing.assert_array_equal(a, before)
    assert not np.shares_memory(out["a"], a)  # the receiver owns its own buffer

    # chunks are cut from a view of the source, so a later change shows (hence the
    # documented rule: do not change the arrays while the payload is in use)
    a[0] = -1.0
    assert next(enc.chunks()).data[:4] == np.float32(-1.0).tobytes()
    with pytest.raises(PayloadError) as exc:
        decode(enc.header, enc.chunks(), max_total_bytes=1 << 20)
    assert exc.value.reason is RejectReason.DIGEST_MISMATCH


def test_materialize_builds_chunks_once_for_many_receivers() -> None:
    rng = np.random.default_rng(1)
    w = Weights([("w", rng.standard_normal(5000).astype(np.float32)), ("b", np.ones(3))])
    enc = encode(w, "global-7", chunk_size=2048)
    lazy = [(c.offset, c.data) for c in enc.chunks()]
    first = enc.materialize()
    assert enc.materialize() is first
    assert [(c.offset, c.data) for c in first] == lazy
    assert all(x is y for x, y in zip(enc.chunks(), first, strict=True))
    for _ in range(3):  # the same messages serve every node
        out = decode(enc.header, first, max_total_bytes=1 << 20)
        np.testing.assert_array_equal(out["w"], w["w"])
        np.testing.assert_array_equal(out["b"], w["b"])


def test_finish_keeps_non_finite_values() -> None:
    a = np.array([1.0, np.nan, np.inf, -np.inf], dtype=np.float32)
    enc = encode(Weights([("a", a)]), "nan")
    out = decode(enc.header, enc.chunks(), max_total_bytes=1 << 20)
    assert le_bytes(out["a"]) == le_bytes(a)
    with pytest.raises(Exception, match="non_finite"):
        out.check_finite()


def test_progress_properties() -> None:
    enc = encode(Weights([("a", np.zeros(3000, dtype=np.uint8))]), "p", chunk_size=1024)
    r = Reassembler(enc.header, max_total_bytes=10_000)
    assert r.payload_id == "p" and r.total_bytes == 3000
    assert [(s.name, s.dtype, s.shape) for s in r.spec] == [("a", "uint8", (3000,))]
    seen = []
    for c in enc.chunks():
        assert not r.done
        r.add(c)
        seen.append(r.received_bytes)
    assert seen == [1024, 2048, 3000]
    assert r.done
    assert r.finish() is r.finish()


def test_fifty_megabyte_payload_lands_in_one_buffer_without_per_tensor_copies() -> None:
    rng = np.random.default_rng(2)
    w = Weights(
        [
            ("embed", rng.standard_normal((2500, 4000), dtype=np.float32)),  # 40 MB
            ("head", rng.standard_normal((1250, 1000))),  # 10 MB float64
            ("bias", np.arange(7, dtype=np.int16)),
            ("step", np.array(3, dtype=np.int64)),
        ]
    )
    enc = encode(w, "big")
    assert enc.total_bytes == w.nbytes > 50_000_000
    assert enc.num_chunks == -(-enc.total_bytes // (1 << 20))
    r = Reassembler(enc.header, max_total_bytes=64 << 20, expected=w.spec())
    for c in enc.chunks():
        r.add(c)
    out = r.finish()

    root = out["embed"].base
    assert isinstance(root, np.ndarray)
    assert root.dtype == np.uint8 and root.ndim == 1 and root.nbytes == enc.total_bytes
    assert root.flags.owndata
    start = root.__array_interface__["data"][0]
    offset = 0
    for name, a in out.items():
        assert a.base is root, name  # a view, not a copy
        assert np.shares_memory(a, root)
        assert a.__array_interface__["data"][0] - start == offset
        offset += a.nbytes
        np.testing.assert_array_equal(a, w[name])
    assert np.shares_memory(out["embed"].base, out["head"].base)
    assert not np.shares_memory(out["embed"], out["head"])


@pytest.mark.parametrize("bad", [0, 1023, MAX_CHUNK_SIZE + 1, -1, True, 1024.0])
def test_chunk_size_out_of_range_is_a_config_error(bad: object) -> None:
    with pytest.raises(ConfigError, match="chunk_size must be"):
        encode(Weights([("a", np.zeros(2))]), "p", chunk_size=bad)  # type: ignore[arg-type]


def test_chunk_size_limits_are_inclusive() -> None:
    w = Weights([("a", np.zeros(2))])
    assert encode(w, "p", chunk_size=MIN_CHUNK_SIZE).chunk_size == 1024
    assert encode(w, "p", chunk_size=MAX_CHUNK_SIZE).chunk_size == 64 << 20


def test_empty_payload_id_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="payload_id must be a non-empty string"):
        encode(Weights([("a", np.zeros(2))]), "")
