"""Update compression codecs: a ``Weights`` delta to wire tensors and back, plus error feedback.

A codec turns a delta into another ``Weights`` whose tensors travel through the normal
chunked tensor transport unchanged, and decodes them back to the original spec. Per
floating tensor ``<n>``:

- ``none``: ``<n>`` as it is; lossless.
- ``fp16``: ``<n>`` as float16; error ≤ 2⁻¹¹·|x| (2⁻²⁵ below float16's normal range).
- ``int8``: ``<n>::q`` int8 and ``<n>::scale`` float32 (scale = max|x| / 127);
  error ≤ scale / 2 per element.
- ``topk``: ``<n>::idx`` int32 (int64 past 2³¹ − 1 elements) and ``<n>::val`` float32
  for the ``ceil(fraction·numel)`` entries of largest |x|; the rest is dropped.

Tensors that are not floating point (step counters, masks) travel as they are. The lossy
codecs are best used through ``ErrorFeedback``, which keeps on the node what was not sent
and adds it to the next delta (Stich et al., "Sparsified SGD with Memory", NeurIPS 2018;
Lin et al., "Deep Gradient Compression", ICLR 2018).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from clawfed.core import (
    ConfigError,
    PayloadError,
    RejectReason,
    TensorSpec,
    Weights,
    WireError,
)

#: Separates a tensor's name from the part of its encoding in wire tensor names.
SEP = "::"

_INT8_MAX = 127
_INT32_LIMIT = int(np.iinfo(np.int32).max)
_FP32_MAX = float(np.finfo(np.float32).max)

F64 = npt.NDArray[np.float64]


class CodecName(StrEnum):
    """Compression applied to an update before it leaves the node."""

    NONE = "none"
    FP16 = "fp16"
    INT8 = "int8"
    TOPK = "topk"


class CodecError(WireError):
    """A delta cannot be encoded (reserved name, value outside the wire dtype's range)."""


@runtime_checkable
class Codec(Protocol):
    """Encodes a delta into wire tensors and decodes them back to the delta's spec."""

    @property
    def name(self) -> CodecName:
        """Which codec this is."""
        ...

    def encode(self, delta: Weights) -> Weights:
        """The wire tensors that represent ``delta`` (finite, names without ``::``)."""
        ...

    def decode(self, wire: Weights, spec: Sequence[TensorSpec]) -> Weights:
        """The delta of ``spec`` (names, shapes, dtypes) that ``wire`` represents."""
        ...

    def encoded_nbytes(self, spec: Sequence[TensorSpec]) -> int:
        """Exact size in bytes of ``encode(d)`` for any delta ``d`` of ``spec``."""
        ...


# ---- pure functions -------------------------------------------------------------------


def quantize_int8(x: npt.NDArray[np.generic]) -> tuple[npt.NDArray[np.int8], np.float32]:
    """Symmetric per-tensor int8 quantization: ``scale = max|x| / 127``, ``q = round(x / scale)``.

    ``|x − q·scale| ≤ scale / 2`` for every element; an all-zero tensor gets scale 0.
    """
    xf = np.asarray(x, dtype=np.float64)
    peak = float(np.max(np.abs(xf))) if xf.size else 0.0
    if peak / _INT8_MAX > _FP32_MAX:
        raise CodecError(f"int8: max |x| = {peak:.3g} exceeds the float32 range of the scale")
    scale = np.float32(peak / _INT8_MAX)
    if scale == 0.0:
        return np.zeros(xf.shape, dtype=np.int8), np.float32(0.0)
    q = np.asarray(np.clip(np.rint(xf / float(scale)), -_INT8_MAX, _INT8_MAX), dtype=np.int8)
    return q, scale


def dequantize_int8(q: npt.NDArray[np.int8], scale: float) -> F64:
    """``q · scale`` as float64."""
    return np.asarray(np.asarray(q, dtype=np.float64) * float(scale))


def topk_count(numel: int, fraction: float) -> int:
    """Elements kept of a tensor of ``numel``: ``ceil(fraction·numel)``, at least 1 unless empty."""
    if numel == 0:
        return 0
    return min(numel, max(1, math.ceil(fraction * numel - 1e-9)))


def topk_indices(x: npt.NDArray[np.generic], k: int) -> npt.NDArray[np.int64]:
    """Flat indices of the ``k`` entries of largest ``|x|``, in increasing order."""
    flat = np.abs(np.asarray(x, dtype=np.float64).reshape(-1))
    if k >= flat.size:
        return np.arange(flat.size, dtype=np.int64)
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    part = np.argpartition(flat, flat.size - k)[flat.size - k :]
    return np.sort(part).astype(np.int64)


def _index_dtype(numel: int) -> str:
    return "int32" if numel <= _INT32_LIMIT else "int64"


def _is_float(dtype: str) -> bool:
    return np.dtype(dtype).kind == "f"


# ---- helpers shared by the codecs -----------------------------------------------------


def _check_encodable(delta: Weights) -> None:
    for name in delta:
        if SEP in name:
            raise CodecError(f"tensor name {name!r} contains the reserved separator {SEP!r}")
    delta.check_finite()


def _to_wire_float(name: str, x: npt.NDArray[np.generic], dtype: str) -> npt.NDArray[np.generic]:
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    limit = float(np.finfo(dtype).max)
    if peak > limit:
        raise CodecError(
            f"tensor {name!r}: max |x| = {peak:.3g} exceeds the {dtype} "
            f"range {limit:.6g}; use another codec"
        )
    return np.asarray(x).astype(dtype)


def _take(wire: Weights, key: str, dtype: str, shape: tuple[int, ...]) -> npt.NDArray[np.generic]:
    if key not in wire:
        raise PayloadError(RejectReason.MISSING_TENSOR, f"wire tensor {key!r} is missing")
    a = wire[key]
    if a.dtype.name != dtype:
        raise PayloadError(
            RejectReason.DTYPE_MISMATCH,
            f"wire tensor {key!r} has dtype {a.dtype.name}, expected {dtype}",
        )
    if tuple(a.shape) != shape:
        raise PayloadError(
            RejectReason.SHAPE_MISMATCH,
            f"wire tensor {key!r} has shape {tuple(a.shape)}, expected {shape}",
        )
    if a.dtype.kind == "f" and not bool(np.isfinite(a).all()):
        raise PayloadError(RejectReason.NON_FINITE, f"wire tensor {key!r} holds NaN or Inf")
    return a


def _check_no_extra(wire: Weights, expected: set[str]) -> None:
    extra = [k for k in wire if k not in expected]
    if extra:
        raise PayloadError(
            RejectReason.UNKNOWN_TENSOR, f"unexpected wire tensor(s): {', '.join(map(repr, extra))}"
        )


def _restore(x: npt.NDArray[np.generic], spec: TensorSpec) -> npt.NDArray[np.generic]:
    return np.asarray(x).reshape(spec.shape).astype(spec.dtype)


# ---- codecs ---------------------------------------------------------------------------


class NoneCodec:
    """No compression: the delta travels as it is."""

    name = CodecName.NONE

    def encode(self, delta: Weights) -> Weights:
        _check_encodable(delta)
        return delta

    def decode(self, wire: Weights, spec: Sequence[TensorSpec]) -> Weights:
        _check_no_extra(wire, {s.name for s in spec})
        return Weights((s.name, _take(wire, s.name, s.dtype, s.shape)) for s in spec)

    def encoded_nbytes(self, spec: Sequence[TensorSpec]) -> int:
        return sum(s.nbytes for s in spec)


class Float16Codec:
    """Floating tensors travel as float16 (half the bytes of float32)."""

    name = CodecName.FP16

    def encode(self, delta: Weights) -> Weights:
        _check_encodable(delta)
        return Weights(
            (n, _to_wire_float(n, a, "float16") if a.dtype.kind == "f" else a)
            for n, a in delta.items()
        )

    def decode(self, wire: Weights, spec: Sequence[TensorSpec]) -> Weights:
        _check_no_extra(wire, {s.name for s in spec})
        out: list[tuple[str, npt.NDArray[np.generic]]] = []
        for s in spec:
            dtype = "float16" if _is_float(s.dtype) else s.dtype
            out.append((s.name, _restore(_take(wire, s.name, dtype, s.shape), s)))
        return Weights(out)

    def encoded_nbytes(self, spec: Sequence[TensorSpec]) -> int:
        return sum(s.numel * 2 if _is_float(s.dtype) else s.nbytes for s in spec)


class Int8Codec:
    """Floating tensors travel as int8 with one float32 scale each (symmetric, max|x|/127)."""

    name = CodecName.INT8

    def encode(self, delta: Weights) -> Weights:
        _check_encodable(delta)
        out: list[tuple[str, npt.NDArray[np.generic]]] = []
        for n, a in delta.items():
            if a.dtype.kind != "f":
                out.append((n, a))
                continue
            q, scale = quantize_int8(a)
            out.append((f"{n}{SEP}q", q))
            out.append((f"{n}{SEP}scale", np.asarray(scale, dtype=np.float32)))
        return Weights(out)

    def decode(self, wire: Weights, spec: Sequence[TensorSpec]) -> Weights:
        expected: set[str] = set()
        out: list[tuple[str, npt.NDArray[np.generic]]] = []
        for s in spec:
            if not _is_float(s.dtype):
                expected.add(s.name)
                out.append((s.name, _take(wire, s.name, s.dtype, s.shape)))
                continue
            qk, sk = f"{s.name}{SEP}q", f"{s.name}{SEP}scale"
            expected.update((qk, sk))
            q = _take(wire, qk, "int8", s.shape).astype(np.int8)
            scale = float(_take(wire, sk, "float32", ()))
            if scale < 0.0:
                raise PayloadError(
                    RejectReason.BAD_HEADER, f"wire tensor {sk!r} must be >= 0, got {scale}"
                )
            out.append((s.name, _restore(dequantize_int8(q, scale), s)))
        _check_no_extra(wire, expected)
        return Weights(out)

    def encoded_nbytes(self, spec: Sequence[TensorSpec]) -> int:
        return sum(s.numel + 4 if _is_float(s.dtype) else s.nbytes for s in spec)


class TopKCodec:
    """Per floating tensor, only the ``ceil(fraction·numel)`` entries of largest |x| travel.

    Indices are sorted and int32 (int64 for tensors over 2³¹ − 1 elements); values float32.
    """

    name = CodecName.TOPK

    def __init__(self, fraction: float = 0.01) -> None:
        if not (math.isfinite(fraction) and 0.0 < fraction <= 1.0):
            raise ConfigError(f"topk fraction must be in (0, 1], got {fraction!r}")
        self.fraction = float(fraction)

    def encode(self, delta: Weights) -> Weights:
        _check_encodable(delta)
        out: list[tuple[str, npt.NDArray[np.generic]]] = []
        for n, a in delta.items():
            if a.dtype.kind != "f":
                out.append((n, a))
                continue
            idx = topk_indices(a, topk_count(a.size, self.fraction))
            val = _to_wire_float(n, a.reshape(-1)[idx], "float32")
            out.append((f"{n}{SEP}idx", idx.astype(_index_dtype(a.size))))
            out.append((f"{n}{SEP}val", val))
        return Weights(out)

    def decode(self, wire: Weights, spec: Sequence[TensorSpec]) -> Weights:
        expected: set[str] = set()
        out: list[tuple[str, npt.NDArray[np.generic]]] = []
        for s in spec:
            if not _is_float(s.dtype):
                expected.add(s.name)
                out.append((s.name, _take(wire, s.name, s.dtype, s.shape)))
                continue
            ik, vk = f"{s.name}{SEP}idx", f"{s.name}{SEP}val"
            expected.update((ik, vk))
            k = topk_count(s.numel, self.fraction)
            idx = _take(wire, ik, _index_dtype(s.numel), (k,)).astype(np.int64)
            val = _take(wire, vk, "float32", (k,))
            if k and (idx[0] < 0 or idx[-1] >= s.numel or bool(np.any(np.diff(idx) <= 0))):
                raise PayloadError(
                    RejectReason.SHAPE_MISMATCH,
                    f"wire tensor {ik!r}: indices must be strictly increasing and within "
                    f"[0, {s.numel})",
                )
            dense = np.zeros(s.numel, dtype=np.float64)
            dense[idx] = val
            out.append((s.name, _restore(dense, s)))
        _check_no_extra(wire, expected)
        return Weights(out)

    def encoded_nbytes(self, spec: Sequence[TensorSpec]) -> int:
        total = 0
        for s in spec:
            if not _is_float(s.dtype):
                total += s.nbytes
                continue
            k = topk_count(s.numel, self.fraction)
            total += k * (np.dtype(_index_dtype(s.numel)).itemsize + 4)
        return total


def build_codec(name: CodecName | str, *, topk_fraction: float = 0.01) -> Codec:
    """The codec called ``name``; ``topk_fraction`` is used by ``topk`` only.

    Raises
    ------
    ConfigError
        If ``name`` is not a ``CodecName`` or ``topk_fraction`` is not in (0, 1].
    """
    try:
        codec = CodecName(name)
    except ValueError as exc:
        known = ", ".join(c.value for c in CodecName)
        raise ConfigError(f"unknown codec {name!r}; known codecs: {known}") from exc
    if codec is CodecName.FP16:
        return Float16Codec()
    if codec is CodecName.INT8:
        return Int8Codec()
    if codec is CodecName.TOPK:
        return TopKCodec(topk_fraction)
    return NoneCodec()


# ---- error feedback -------------------------------------------------------------------


class ErrorFeedback:
    """Node-side memory of what a lossy codec did not send, added to the next delta.

    ``encode(delta)`` sends ``codec(delta + residual)`` and keeps
    ``residual ← delta + residual − decode(sent)``; so the sum of everything decoded plus
    the residual always equals the sum of all deltas, and for top-k the residual stays
    bounded (Stich et al., NeurIPS 2018). One object per node and job.
    """

    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        self._residual: dict[str, npt.NDArray[np.generic]] | None = None
        self._spec: tuple[TensorSpec, ...] | None = None

    def residual(self) -> Weights:
        """What has not been sent yet (floating tensors only); empty before the first encode."""
        return Weights() if self._residual is None else Weights(self._residual)

    def reset(self) -> None:
        """Forget the residual (e.g. when the node starts a new job or model)."""
        self._residual = None
        self._spec = None

    def encode(self, delta: Weights) -> Weights:
        """Wire tensors for ``delta`` plus the carried residual; updates the residual."""
        _check_encodable(delta)
        spec = delta.spec()
        if self._spec is not None and spec != self._spec:
            raise CodecError(
                "error feedback holds a residual for another model spec; call reset() "
                "before encoding updates of a new model"
            )
        corrected: list[tuple[str, npt.NDArray[np.generic]]] = []
        for n, a in delta.items():
            r = None if self._residual is None else self._residual.get(n)
            corrected.append((n, a if r is None else np.asarray(np.add(a, r, dtype=a.dtype))))
        sent_in = Weights(corrected)
        wire = self.codec.encode(sent_in)
        decoded = self.codec.decode(wire, spec)
        self._residual = {
            n: np.asarray(np.subtract(a, decoded[n], dtype=a.dtype))
            for n, a in sent_in.items()
            if a.dtype.kind == "f"
        }
        self._spec = spec
        return wire


# ---- the job's choice, on both ends ---------------------------------------------------

#: Task-config keys that carry the job's compression to the nodes.
CODEC_KEY = "compression.codec"
TOPK_RATIO_KEY = "compression.topk_ratio"
ERROR_FEEDBACK_KEY = "compression.error_feedback"


def encoded_spec(codec: Codec, spec: Sequence[TensorSpec]) -> tuple[TensorSpec, ...]:
    """The wire tensors (names, dtypes, shapes) ``codec`` makes of any delta of ``spec``.

    The coordinator expects exactly these from a node, so a payload of the wrong layout is
    refused while it is reassembled, before it is decoded.
    """
    zeros = Weights((s.name, np.zeros(s.shape, dtype=s.dtype)) for s in spec)
    return codec.encode(zeros).spec()


def codec_from_config(config: Mapping[str, object]) -> tuple[Codec, bool]:
    """The codec a task's config names and whether error feedback is on (default: none, on).

    Raises
    ------
    ConfigError
        When a compression key holds a value of the wrong type or out of range.
    """
    name = config.get(CODEC_KEY, CodecName.NONE.value)
    ratio = config.get(TOPK_RATIO_KEY, 0.01)
    feedback = config.get(ERROR_FEEDBACK_KEY, True)
    if not isinstance(name, str):
        raise ConfigError(f"task config {CODEC_KEY!r} must be a codec name, got {name!r}")
    if isinstance(ratio, bool) or not isinstance(ratio, int | float):
        raise ConfigError(f"task config {TOPK_RATIO_KEY!r} must be a number, got {ratio!r}")
    if not isinstance(feedback, bool):
        raise ConfigError(f"task config {ERROR_FEEDBACK_KEY!r} must be a bool, got {feedback!r}")
    return build_codec(name, topk_fraction=float(ratio)), feedback


class UpdateCompressor:
    """Node side: encodes each fit delta with its job's codec, keeping error feedback per job.

    The residual of a lossy codec stays on the node (one ``ErrorFeedback`` per job, reset
    when the job's model or codec changes), so what top-k drops in one round is sent later.
    At most ``max_jobs`` residuals are kept (the oldest job's is forgotten first).
    """

    def __init__(self, max_jobs: int = 8) -> None:
        if max_jobs < 1:
            raise ConfigError(f"max_jobs must be >= 1, got {max_jobs}")
        self._max_jobs = max_jobs
        self._feedback: dict[str, tuple[str, ErrorFeedback]] = {}

    def encode(self, job_id: str, config: Mapping[str, object], delta: Weights) -> Weights:
        """The wire tensors of ``delta`` for a fit task of ``job_id`` with ``config``."""
        codec, feedback = codec_from_config(config)
        if codec.name is CodecName.NONE:
            return delta
        if not feedback:
            return codec.encode(delta)
        key = f"{codec.name}:{getattr(codec, 'fraction', '')}"
        held = self._feedback.get(job_id)
        if held is None or held[0] != key:
            held = (key, ErrorFeedback(codec))
        self._feedback.pop(job_id, None)
        while len(self._feedback) >= self._max_jobs:
            self._feedback.pop(next(iter(self._feedback)))
        self._feedback[job_id] = held
        try:
            return held[1].encode(delta)
        except CodecError:
            held[1].reset()  # a new model under the same job id: start afresh
            return held[1].encode(delta)
