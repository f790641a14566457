"""Update compression codecs (fp16, int8, top-k) and node-side error feedback."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from clawfed.core import (
    ConfigError,
    PayloadError,
    RejectReason,
    UpdateRejected,
    Weights,
)
from clawfed.wire.codecs import (
    Codec,
    CodecError,
    CodecName,
    ErrorFeedback,
    Float16Codec,
    Int8Codec,
    NoneCodec,
    TopKCodec,
    build_codec,
    quantize_int8,
    topk_count,
    topk_indices,
)

ALL_CODECS: list[Codec] = [NoneCodec(), Float16Codec(), Int8Codec(), TopKCodec(0.25)]


def _mixed() -> Weights:
    rng = np.random.default_rng(0)
    return Weights(
        {
            "fc.weight": rng.normal(size=(3, 5)).astype(np.float32),
            "fc.bias": rng.normal(size=5).astype(np.float64),
            "scale": np.asarray(0.7, dtype=np.float32),
            "emb": rng.normal(size=(2, 2)).astype(np.float16),
            "empty": np.zeros((0, 4), dtype=np.float32),
            "steps": np.array([3, 4], dtype=np.int64),
            "mask": np.array([True, False]),
        }
    )


def test_codec_names() -> None:
    assert [c.value for c in CodecName] == ["none", "fp16", "int8", "topk"]
    for name in CodecName:
        codec = build_codec(name, topk_fraction=0.5)
        assert isinstance(codec, Codec) and codec.name is name
    assert isinstance(build_codec("topk"), TopKCodec)


def test_build_codec_errors() -> None:
    with pytest.raises(ConfigError, match="unknown codec 'gzip'; known codecs: none, fp16, int8"):
        build_codec("gzip")
    for bad in (0.0, 1.5, float("nan")):
        with pytest.raises(ConfigError, match="topk fraction must be in"):
            build_codec(CodecName.TOPK, topk_fraction=bad)


@pytest.mark.parametrize("codec", ALL_CODECS, ids=lambda c: c.name)
def test_decode_restores_names_shapes_dtypes_and_sizes(codec: Codec) -> None:
    d = _mixed()
    wire = codec.encode(d)
    assert wire.nbytes == codec.encoded_nbytes(d.spec())
    out = codec.decode(wire, d.spec())
    assert out.spec() == d.spec()
    np.testing.assert_array_equal(out["steps"], d["steps"])
    np.testing.assert_array_equal(out["mask"], d["mask"])
    if codec.name is CodecName.NONE:
        assert all(np.array_equal(out[n], d[n]) for n in d)


def test_wire_tensor_names_and_dtypes() -> None:
    d = Weights({"w": np.arange(8, dtype=np.float32), "n": np.array([1], dtype=np.int64)})
    assert [(s.name, s.dtype, s.shape) for s in Int8Codec().encode(d).spec()] == [
        ("w::q", "int8", (8,)),
        ("w::scale", "float32", ()),
        ("n", "int64", (1,)),
    ]
    assert [(s.name, s.dtype, s.shape) for s in TopKCodec(0.25).encode(d).spec()] == [
        ("w::idx", "int32", (2,)),
        ("w::val", "float32", (2,)),
        ("n", "int64", (1,)),
    ]
    assert Float16Codec().encode(d)["w"].dtype == np.float16
    # 8 floats: fp32 32 B, fp16 16 B, int8 8 + 4 B, top-2 2*(4 + 4) B; the int64 adds 8 B
    assert [c.encoded_nbytes(d.spec()) for c in ALL_CODECS] == [40, 24, 20, 24]


@settings(max_examples=60, deadline=None)
@given(
    arrays(
        np.float32, array_shapes(max_dims=3, max_side=6), elements=st.floats(-6e4, 6e4, width=32)
    )
)
def test_fp16_error_bound(x: np.ndarray) -> None:
    d = Weights({"x": x})
    out = Float16Codec().decode(Float16Codec().encode(d), d.spec())["x"]
    bound = np.abs(x.astype(np.float64)) * 2.0**-11 + 2.0**-25
    assert np.all(np.abs(out.astype(np.float64) - x) <= bound)


@settings(max_examples=60, deadline=None)
@given(
    arrays(
        np.float32, array_shapes(max_dims=3, max_side=6), elements=st.floats(-1e6, 1e6, width=32)
    )
)
def test_int8_error_bound(x: np.ndarray) -> None:
    d = Weights({"x": x})
    wire = Int8Codec().encode(d)
    scale = float(wire["x::scale"])
    assert scale == pytest.approx(float(np.max(np.abs(x), initial=0.0)) / 127, rel=1e-6)
    assert int(np.max(np.abs(wire["x::q"].astype(np.int16)), initial=0)) <= 127
    out = Int8Codec().decode(wire, d.spec())["x"].astype(np.float64)
    # + float32 rounding of the output, + 2^-140 where max|x|/127 underflows float32 (< 1e-42)
    bound = scale / 2 * (1 + 1e-6) + np.abs(x.astype(np.float64)) * 2.0**-23 + 2.0**-140
    assert np.all(np.abs(out - x) <= bound)


def test_int8_zero_tensor() -> None:
    q, scale = quantize_int8(np.zeros(4))
    assert scale == 0.0 and not q.any()


@settings(max_examples=80, deadline=None)
@given(
    arrays(
        np.float32, array_shapes(max_dims=2, max_side=9), elements=st.floats(-1e3, 1e3, width=32)
    ),
    st.floats(0.01, 1.0),
)
def test_topk_keeps_exactly_the_k_largest(x: np.ndarray, fraction: float) -> None:
    codec = TopKCodec(fraction)
    d = Weights({"x": x})
    wire = codec.encode(d)
    k = topk_count(x.size, fraction)
    assert k == min(x.size, max(1, math.ceil(fraction * x.size - 1e-9)))
    idx = wire["x::idx"].astype(np.int64)
    assert idx.shape == (k,) and wire["x::val"].shape == (k,)
    assert np.all(np.diff(idx) > 0)
    flat = x.reshape(-1)
    np.testing.assert_array_equal(wire["x::val"], flat[idx])
    dropped = np.delete(np.abs(flat), idx)
    if dropped.size:
        assert float(np.min(np.abs(flat[idx]))) >= float(np.max(dropped))
    out = codec.decode(wire, d.spec())["x"].reshape(-1)
    np.testing.assert_array_equal(out[idx], flat[idx])
    assert not np.delete(out, idx).any()


def test_topk_indices_pure() -> None:
    x = np.array([0.1, -5.0, 3.0, 0.0, 4.0])
    assert topk_indices(x, 2).tolist() == [1, 4]
    assert topk_indices(x, 9).tolist() == [0, 1, 2, 3, 4]
    assert topk_indices(x, 0).tolist() == []


_vec = st.integers(1, 24).flatmap(
    lambda d: st.lists(
        arrays(np.float64, (d,), elements=st.floats(-100, 100)), min_size=1, max_size=25
    )
)


@settings(max_examples=60, deadline=None)
@given(_vec, st.floats(0.01, 1.0))
def test_error_feedback_sum_is_preserved_and_residual_bounded(
    deltas: list[np.ndarray], fraction: float
) -> None:
    d = deltas[0].size
    k = topk_count(d, fraction)
    q = math.sqrt(1.0 - k / d) + 2.0**-23  # top-k contraction, plus float32 rounding of values
    big_g = max(float(np.linalg.norm(g)) for g in deltas)
    bound = q / (1.0 - q) * big_g * (1 + 1e-6) + 1e-9 if q < 1 else math.inf
    codec = TopKCodec(fraction)
    ef = ErrorFeedback(codec)
    sent_sum = np.zeros(d)
    true_sum = np.zeros(d)
    for g in deltas:
        delta = Weights({"g": g})
        sent_sum += codec.decode(ef.encode(delta), delta.spec())["g"]
        true_sum += g
        residual = ef.residual()["g"]
        np.testing.assert_allclose(sent_sum + residual, true_sum, atol=1e-9 * (1 + big_g) * 25)
        assert float(np.linalg.norm(residual)) <= bound


@settings(max_examples=30, deadline=None)
@given(arrays(np.float64, st.integers(4, 16), elements=st.floats(0.5, 10.0)), st.data())
def test_error_feedback_makes_the_cumulative_sum_converge(
    g: np.ndarray, data: st.DataObject
) -> None:
    g = g * data.draw(st.lists(st.sampled_from([-1.0, 1.0]), min_size=g.size, max_size=g.size))
    codec = TopKCodec(1.0 / g.size)  # one coordinate per round
    delta = Weights({"g": g})
    ef = ErrorFeedback(codec)
    with_ef = np.zeros_like(g)
    without = np.zeros_like(g)
    errors = []
    for t in range(1, 401):
        with_ef += codec.decode(ef.encode(delta), delta.spec())["g"]
        without += codec.decode(codec.encode(delta), delta.spec())["g"]
        if t in (50, 400):
            errors.append(float(np.linalg.norm(with_ef / t - g) / np.linalg.norm(g)))
    q = math.sqrt(1 - 1 / g.size)
    assert errors[1] <= q / (1 - q) / 400 * 1.001  # the mean of what was sent tends to g
    assert errors[1] < errors[0] or errors[0] < 1e-9
    assert float(np.linalg.norm(without / 400 - g)) > 0.4  # without feedback it never does


def test_error_feedback_with_lossless_codec_keeps_nothing() -> None:
    ef = ErrorFeedback(NoneCodec())
    assert len(ef.residual()) == 0
    ef.encode(_mixed())
    assert all(not r.any() for r in ef.residual().values())
    assert "steps" not in ef.residual()  # integer tensors have no residual


def test_error_feedback_refuses_another_spec_until_reset() -> None:
    ef = ErrorFeedback(Int8Codec())
    ef.encode(Weights({"w": np.ones(3, dtype=np.float32)}))
    with pytest.raises(CodecError, match=r"call reset\(\)"):
        ef.encode(Weights({"w": np.ones(4, dtype=np.float32)}))
    ef.reset()
    assert len(ef.residual()) == 0
    ef.encode(Weights({"w": np.ones(4, dtype=np.float32)}))
    assert ef.residual()["w"].shape == (4,)


def test_encode_refusals() -> None:
    with pytest.raises(CodecError, match="reserved separator '::'"):
        TopKCodec().encode(Weights({"a::b": np.ones(2, dtype=np.float32)}))
    with pytest.raises(CodecError, match="exceeds the float16 range"):
        Float16Codec().encode(Weights({"w": np.array([1e5], dtype=np.float32)}))
    with pytest.raises(CodecError, match="exceeds the float32 range"):
        Int8Codec().encode(Weights({"w": np.array([1e300])}))
    with pytest.raises(UpdateRejected) as exc:
        Int8Codec().encode(Weights({"w": np.array([np.nan], dtype=np.float32)}))
    assert exc.value.reason is RejectReason.NON_FINITE


def _topk_wire(idx: list[int], val: list[float]) -> Weights:
    return Weights(
        {"w::idx": np.array(idx, dtype=np.int32), "w::val": np.array(val, dtype=np.float32)}
    )


@pytest.mark.parametrize(
    ("codec", "wire", "reason", "message"),
    [
        (TopKCodec(0.5), _topk_wire([0], [1.0]), RejectReason.SHAPE_MISMATCH, "shape"),
        (TopKCodec(0.5), _topk_wire([0, 4], [1, 2]), RejectReason.SHAPE_MISMATCH, "within"),
        (TopKCodec(0.5), _topk_wire([2, 1], [1, 2]), RejectReason.SHAPE_MISMATCH, "increasing"),
        (TopKCodec(0.5), _topk_wire([1, 1], [1, 2]), RejectReason.SHAPE_MISMATCH, "increasing"),
        (TopKCodec(0.5), _topk_wire([0, 1], [1, np.nan]), RejectReason.NON_FINITE, "NaN"),
        (
            TopKCodec(0.5),
            Weights({"w::idx": np.array([0, 1]), "w::val": np.ones(2, dtype=np.float32)}),
            RejectReason.DTYPE_MISMATCH,
            "int64, expected int32",
        ),
        (
            Int8Codec(),
            Weights({"w::q": np.zeros(4, dtype=np.int8), "w::scale": np.float32([-1.0])[0:1]}),
            RejectReason.SHAPE_MISMATCH,
            "w::scale",
        ),
        (
            Int8Codec(),
            Weights({"w::q": np.zeros(4, dtype=np.int8), "w::scale": np.array(-1.0, np.float32)}),
            RejectReason.BAD_HEADER,
            ">= 0",
        ),
        (
            Int8Codec(),
            Weights({"w::q": np.zeros(4, np.int8)}),
            RejectReason.MISSING_TENSOR,
            "'w::scale' is missing",
        ),
        (
            Float16Codec(),
            Weights({"w": np.zeros(4, np.float16), "x": np.zeros(1, np.float16)}),
            RejectReason.UNKNOWN_TENSOR,
            "'x'",
        ),
        (
            Float16Codec(),
            Weights({"w": np.zeros(4, np.float32)}),
            RejectReason.DTYPE_MISMATCH,
            "float32, expected float16",
        ),
        (
            NoneCodec(),
            Weights({"w": np.zeros(3, np.float32)}),
            RejectReason.SHAPE_MISMATCH,
            r"\(3,\), expected \(4,\)",
        ),
    ],
)
def test_decode_rejects_malformed_wire(
    codec: Codec, wire: Weights, reason: RejectReason, message: str
) -> None:
    spec = Weights({"w": np.zeros(4, dtype=np.float32)}).spec()
    with pytest.raises(PayloadError, match=message) as exc:
        codec.decode(wire, spec)
    assert exc.value.reason is reason
