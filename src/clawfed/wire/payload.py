"""Tensor payloads on the wire: ``Weights`` to a header plus chunks, and back again."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt

from clawfed.core.buffers import BufferPool
from clawfed.core.errors import ConfigError, PayloadError, RejectReason
from clawfed.core.weights import WIRE_DTYPES, TensorSpec, Weights
from clawfed.wire._proto import federation_pb2 as pb

#: Smallest and largest chunk a sender may cut; the default is 1 MiB.
MIN_CHUNK_SIZE = 1 << 10
MAX_CHUNK_SIZE = 64 << 20
DEFAULT_CHUNK_SIZE = 1 << 20

_SHA256_LEN = 32
_MAX_NDIM = 64  # numpy's limit on the number of dimensions
_INTP_MAX = int(np.iinfo(np.intp).max)
_WIRE_ORDER: Final = "<"

ByteArray = npt.NDArray[np.uint8]


def _short(text: str, limit: int = 64) -> str:
    """``repr`` of a peer-supplied string, cut so a hostile value cannot flood a log."""
    r = repr(text)
    return r if len(r) <= limit else r[: limit - 4] + "...'"


def _wire_bytes(arr: npt.NDArray[np.generic]) -> memoryview:
    """A flat byte view of ``arr`` as C-ordered little-endian data, copying only if needed."""
    wire = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder(_WIRE_ORDER))
    return wire.reshape(-1).view(np.uint8).data


class EncodedPayload:
    """A payload ready to send: its header and a way to cut its chunks.

    Holds byte views of the little-endian tensors (no copy when the input is already
    C-contiguous little-endian), so the source arrays must not change while it is in use.
    """

    __slots__ = ("_buffers", "_chunk_size", "_header", "_materialized")

    def __init__(
        self, header: pb.PayloadHeader, buffers: Sequence[memoryview], chunk_size: int
    ) -> None:
        self._header = header
        self._buffers = tuple(b for b in buffers if len(b) > 0)
        self._chunk_size = chunk_size
        self._materialized: tuple[pb.Chunk, ...] | None = None

    @property
    def header(self) -> pb.PayloadHeader:
        """The ``PayloadHeader`` announcing names, dtypes, shapes, size and SHA-256."""
        return self._header

    @property
    def payload_id(self) -> str:
        """The id every chunk of this payload carries."""
        return self._header.payload_id

    @property
    def total_bytes(self) -> int:
        """Size of the concatenated raw buffers."""
        return self._header.total_bytes

    @property
    def chunk_size(self) -> int:
        """Largest number of data bytes in one chunk."""
        return self._chunk_size

    @property
    def num_chunks(self) -> int:
        """How many chunks ``chunks()`` yields (0 for an empty payload)."""
        return -(-self.total_bytes // self._chunk_size)

    def chunks(self) -> Iterator[pb.Chunk]:
        """Yield the ``Chunk`` messages in order, each at most ``chunk_size`` bytes.

        Chunks are cut lazily from the tensor buffers unless ``materialize()`` ran, in
        which case the stored messages are yielded.
        """
        if self._materialized is not None:
            yield from self._materialized
            return
        yield from self._cut()

    def materialize(self) -> tuple[pb.Chunk, ...]:
        """Build every ``Chunk`` message once and keep them for reuse.

        Use this when the same payload (same ``payload_id``) goes to many peers, e.g. the
        global model sent to every node of a round: the bytes are copied into messages
        once instead of once per peer. Later calls return the same tuple.
        """
        if self._materialized is None:
            self._materialized = tuple(self._cut())
        return self._materialized

    def spans(self) -> Iterator[tuple[int, tuple[memoryview, ...]]]:
        """Yield ``(offset, pieces)`` of each chunk, the pieces being views of the tensors.

        The pieces of one chunk hold ``chunk_size`` bytes together (the last chunk fewer);
        one chunk spans several tensors when they are small. Nothing is copied, so a sender
        can lay the bytes straight into its message (see ``chunkwire.chunk_message``).
        """
        total = self.total_bytes
        size = self._chunk_size
        bufs = self._buffers
        seg = 0  # index of the buffer the next byte comes from
        seg_pos = 0  # position inside that buffer
        pos = 0
        while pos < total:
            need = min(size, total - pos)
            start = pos
            pieces: list[memoryview] = []
            while need > 0:
                mv = bufs[seg]
                take = min(len(mv) - seg_pos, need)
                pieces.append(mv[seg_pos : seg_pos + take])
                seg_pos += take
                need -= take
                pos += take
                if seg_pos == len(mv):
                    seg += 1
                    seg_pos = 0
            yield start, tuple(pieces)

    def _cut(self) -> Iterator[pb.Chunk]:
        payload_id = self._header.payload_id
        for offset, pieces in self.spans():
            data = pieces[0].tobytes() if len(pieces) == 1 else b"".join(pieces)
            yield pb.Chunk(payload_id=payload_id, offset=offset, data=data)


def encode(
    weights: Weights, payload_id: str, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> EncodedPayload:
    """Prepare ``weights`` for the wire.

    Parameters
    ----------
    weights
        The tensors, in the order they are sent.
    payload_id
        Non-empty id that ties the chunks to the header.
    chunk_size
        Largest number of data bytes per chunk, 1 KiB to 64 MiB.

    Returns
    -------
    EncodedPayload
        The header (with the SHA-256 of all raw little-endian buffers) and the chunks.

    Raises
    ------
    ConfigError
        If ``payload_id`` is empty or ``chunk_size`` is outside 1 KiB..64 MiB.
    """
    if not isinstance(payload_id, str) or not payload_id:
        raise ConfigError(f"payload_id must be a non-empty string, got {payload_id!r}")
    if (
        isinstance(chunk_size, bool)
        or not isinstance(chunk_size, int)
        or not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE
    ):
        raise ConfigError(
            f"chunk_size must be an int from {MIN_CHUNK_SIZE} (1 KiB) to {MAX_CHUNK_SIZE} "
            f"(64 MiB) bytes, got {chunk_size!r}"
        )
    digest = hashlib.sha256()
    tensors: list[pb.TensorHeader] = []
    buffers: list[memoryview] = []
    total = 0
    for name, arr in weights.items():
        mv = _wire_bytes(arr)
        digest.update(mv)
        buffers.append(mv)
        total += len(mv)
        tensors.append(pb.TensorHeader(name=name, dtype=arr.dtype.name, shape=arr.shape))
    header = pb.PayloadHeader(
        payload_id=payload_id, tensors=tensors, total_bytes=total, sha256=digest.digest()
    )
    return EncodedPayload(header, buffers, chunk_size)


def _header_specs(header: pb.PayloadHeader, max_total_bytes: int) -> tuple[TensorSpec, ...]:
    """Check a received header and return its tensor specs; ``PayloadError`` if it is bad."""

    def bad(detail: str) -> PayloadError:
        return PayloadError(RejectReason.BAD_HEADER, detail)

    if not header.payload_id:
        raise bad("payload_id must not be empty")
    if len(header.sha256) != _SHA256_LEN:
        raise bad(f"sha256 must be {_SHA256_LEN} bytes, got {len(header.sha256)}")
    if header.total_bytes > max_total_bytes:
        raise PayloadError(
            RejectReason.OVERSIZE,
            f"payload announces {header.total_bytes} bytes, the limit is {max_total_bytes}",
        )
    specs: list[TensorSpec] = []
    seen: set[str] = set()
    total = 0
    for i, th in enumerate(header.tensors):
        name, dtype, shape = th.name, th.dtype, tuple(int(d) for d in th.shape)
        if not name:
            raise bad(f"tensor #{i}: name must not be empty")
        if name in seen:
            raise bad(f"tensor names must be unique, {_short(name)} appears twice")
        seen.add(name)
        if dtype not in WIRE_DTYPES:
            raise bad(
                f"tensor {_short(name)}: dtype must be one of {sorted(WIRE_DTYPES)}, "
                f"got {_short(dtype)}"
            )
        if len(shape) > _MAX_NDIM:
            raise bad(f"tensor {_short(name)}: at most {_MAX_NDIM} dimensions, got {len(shape)}")
        itemsize = np.dtype(dtype).itemsize
        extent = itemsize  # bytes spanned by the non-zero dimensions: numpy's size limit
        for d in shape:
            extent *= max(d, 1)
            if extent > _INTP_MAX:
                raise bad(f"tensor {_short(name)}: shape {shape} is too large for numpy")
        spec = TensorSpec(name, dtype, shape)
        total += spec.nbytes
        specs.append(spec)
    if total != header.total_bytes:
        raise bad(
            f"total_bytes must equal the sum of the tensor sizes ({total}), "
            f"got {header.total_bytes}"
        )
    return tuple(specs)


def _check_expected(got: Sequence[TensorSpec], expected: Iterable[TensorSpec]) -> None:
    """Raise ``PayloadError`` unless the announced tensors are exactly ``expected``."""
    want = {s.name: s for s in expected}
    for s in got:
        w = want.get(s.name)
        if w is None:
            raise PayloadError(RejectReason.UNKNOWN_TENSOR, f"unknown tensor {_short(s.name)}")
        if s.dtype != w.dtype:
            raise PayloadError(
                RejectReason.DTYPE_MISMATCH,
                f"tensor {s.name!r} has dtype {s.dtype}, expected {w.dtype}",
            )
        if s.shape != w.shape:
            raise PayloadError(
                RejectReason.SHAPE_MISMATCH,
                f"tensor {s.name!r} has shape {s.shape}, expected {w.shape}",
            )
    announced = {s.name for s in got}
    missing = [n for n in want if n not in announced]
    if missing:
        raise PayloadError(
            RejectReason.MISSING_TENSOR, f"missing tensor(s): {', '.join(map(repr, missing))}"
        )


class ChunkLike(Protocol):
    """What ``Reassembler.add`` reads from a chunk: ``pb.Chunk`` or ``chunkwire.ChunkView``."""

    @property
    def payload_id(self) -> str:
        """The payload the chunk belongs to."""
        ...

    @property
    def offset(self) -> int:
        """Position of the chunk's first byte in the payload."""
        ...

    @property
    def data(self) -> bytes | memoryview:
        """The chunk's bytes."""
        ...


class Reassembler:
    """Collects the chunks of one payload into a single preallocated buffer.

    The header is checked on construction; chunks must then arrive in order, without
    gaps or overlap. The SHA-256 is updated as chunks arrive and checked by ``finish()``,
    which returns tensors that are views into the one buffer (no per-tensor copy).
    Finiteness is not checked here; see ``Weights.check_finite``.

    Parameters
    ----------
    header
        The ``PayloadHeader`` that announced the payload.
    max_total_bytes
        Largest payload this side accepts; a bigger announcement is refused before any
        memory is allocated.
    expected
        If given, the tensors the payload must hold (names, dtypes and shapes; any order).
    pool
        Where the buffer comes from; a pool reuses the buffer of an earlier payload of the
        same size once nothing refers to it any more (see ``BufferPool``).

    Raises
    ------
    ConfigError
        If ``max_total_bytes`` is not a positive int.
    PayloadError
        ``BAD_HEADER`` or ``OVERSIZE`` for a malformed header; ``UNKNOWN_TENSOR``,
        ``MISSING_TENSOR``, ``SHAPE_MISMATCH`` or ``DTYPE_MISMATCH`` against ``expected``.
    """

    __slots__ = ("_buf", "_digest", "_header", "_received", "_result", "_specs")

    def __init__(
        self,
        header: pb.PayloadHeader,
        *,
        max_total_bytes: int,
        expected: Sequence[TensorSpec] | None = None,
        pool: BufferPool | None = None,
    ) -> None:
        if (
            isinstance(max_total_bytes, bool)
            or not isinstance(max_total_bytes, int)
            or max_total_bytes <= 0
        ):
            raise ConfigError(f"max_total_bytes must be an int > 0, got {max_total_bytes!r}")
        self._specs = _header_specs(header, max_total_bytes)
        if expected is not None:
            _check_expected(self._specs, expected)
        self._header = pb.PayloadHeader()
        self._header.CopyFrom(header)
        size = header.total_bytes
        self._buf: ByteArray = np.empty(size, dtype=np.uint8) if pool is None else pool.take(size)
        self._digest = hashlib.sha256()
        self._received = 0
        self._result: Weights | None = None

    @property
    def payload_id(self) -> str:
        """The id the chunks must carry."""
        return self._header.payload_id

    @property
    def spec(self) -> tuple[TensorSpec, ...]:
        """The announced tensors, in order."""
        return self._specs

    @property
    def total_bytes(self) -> int:
        """Announced payload size."""
        return self._header.total_bytes

    @property
    def received_bytes(self) -> int:
        """Bytes received so far."""
        return self._received

    @property
    def done(self) -> bool:
        """True once every announced byte has arrived."""
        return self._received == self._header.total_bytes

    def add(self, chunk: ChunkLike) -> None:
        """Copy one chunk into the buffer.

        Raises
        ------
        PayloadError
            ``BAD_CHUNK`` for a wrong payload id, an empty chunk, or an offset other than
            the bytes received so far; ``OVERSIZE`` if the chunk runs past the announced
            size. A refused chunk leaves the state unchanged.
        """
        if chunk.payload_id != self._header.payload_id:
            raise PayloadError(
                RejectReason.BAD_CHUNK,
                f"chunk belongs to payload {_short(chunk.payload_id)}, "
                f"expected {self._header.payload_id!r}",
            )
        offset = chunk.offset
        if offset != self._received:
            raise PayloadError(
                RejectReason.BAD_CHUNK,
                f"chunks must arrive in order: expected offset {self._received}, got {offset}",
            )
        data = chunk.data  # one access: on pb.Chunk each access builds a new bytes object
        n = len(data)
        if n == 0:
            raise PayloadError(RejectReason.BAD_CHUNK, f"chunk at offset {offset} is empty")
        total = self._header.total_bytes
        if offset + n > total:
            raise PayloadError(
                RejectReason.OVERSIZE,
                f"message larger than announced: chunk at offset {offset} with {n} bytes "
                f"runs past total_bytes={total}",
            )
        self._buf[offset : offset + n] = np.frombuffer(data, dtype=np.uint8)
        self._digest.update(data)
        self._received = offset + n

    def finish(self) -> Weights:
        """Check completeness and digest; return the tensors as views into the buffer.

        Calling it again returns the same ``Weights``.

        Raises
        ------
        PayloadError
            ``TRUNCATED`` if bytes are missing, ``DIGEST_MISMATCH`` if the SHA-256 of the
            received bytes differs from the header's.
        """
        total = self._header.total_bytes
        if self._received != total:
            raise PayloadError(
                RejectReason.TRUNCATED,
                f"received {self._received} of {total} announced bytes",
            )
        got = self._digest.digest()
        if got != self._header.sha256:
            raise PayloadError(
                RejectReason.DIGEST_MISMATCH,
                f"SHA-256 of the received bytes is {got.hex()}, "
                f"the header announced {self._header.sha256.hex()}",
            )
        if self._result is not None:
            return self._result
        out: list[tuple[str, npt.NDArray[np.generic]]] = []
        pos = 0
        for s in self._specs:
            wire_dtype = np.dtype(s.dtype).newbyteorder(_WIRE_ORDER)
            arr = self._buf[pos : pos + s.nbytes].view(wire_dtype).reshape(s.shape)
            if not wire_dtype.isnative:  # big-endian host: swap in place, still one buffer
                arr = arr.byteswap(inplace=True).view(wire_dtype.newbyteorder("="))
            out.append((s.name, arr))
            pos += s.nbytes
        self._result = Weights(out)
        return self._result


def decode(
    header: pb.PayloadHeader,
    chunks: Iterable[ChunkLike],
    *,
    max_total_bytes: int,
    expected: Sequence[TensorSpec] | None = None,
) -> Weights:
    """Reassemble a whole payload from its header and chunks (see ``Reassembler``).

    Raises
    ------
    PayloadError
        For any of the reasons ``Reassembler`` gives.
    """
    r = Reassembler(header, max_total_bytes=max_total_bytes, expected=expected)
    for c in chunks:
        r.add(c)
    return r.finish()
