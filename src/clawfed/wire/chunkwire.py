"""Chunk messages on the hot path, parsed and built by hand instead of through protobuf objects.

A ``Chunk`` (field 4 of both ``NodeMessage`` and ``CoordinatorMessage``) carries up to a few
MiB of tensor bytes. Decoding it with protobuf copies those bytes twice (into the message,
then into a new ``bytes`` on ``.data``) before the reassembler copies them a third time; the
parser here returns a ``ChunkView`` whose ``data`` is a ``memoryview`` into the received
bytes. It takes only the canonical shape (one field 4 spanning the whole message; inside it
fields 1, 2 and 3 at most once each, in any order); anything else goes to protobuf, so the
result is always what protobuf would decode. Building works the same way the other round:
the message bytes are laid out directly around the tensor bytes, in protobuf's own order.

The encoding follows the protobuf wire format (https://protobuf.dev/programming-guides/encoding/).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, TypeVar

from google.protobuf.message import DecodeError, Message

from clawfed.core.errors import ConfigError, WireError
from clawfed.wire._proto import federation_pb2 as pb

#: Tag of field 4 (``chunk``) with wire type 2 (length-delimited), in both session messages.
_CHUNK_TAG: Final = 0x22
_PAYLOAD_ID_TAG: Final = 0x0A  # Chunk.payload_id: field 1, length-delimited
_OFFSET_TAG: Final = 0x10  # Chunk.offset: field 2, varint
_DATA_TAG: Final = 0x1A  # Chunk.data: field 3, length-delimited
_MAX_VARINT_BYTES: Final = 10
_UINT64_MAX: Final = (1 << 64) - 1

M = TypeVar("M", bound=Message)


class ChunkView:
    """A received ``Chunk``: ``data`` is a view into the message bytes, not a copy.

    It has the three fields the reassembler reads, so it stands in for ``pb.Chunk`` there.
    The view keeps the received message alive until the chunk is dropped.
    """

    __slots__ = ("data", "offset", "payload_id")

    def __init__(self, payload_id: str, offset: int, data: memoryview) -> None:
        self.payload_id = payload_id
        self.offset = offset
        self.data = data

    def __repr__(self) -> str:
        return (
            f"ChunkView(payload_id={self.payload_id!r}, offset={self.offset}, "
            f"data=<{len(self.data)} bytes>)"
        )


def _varint(buf: bytes, pos: int, end: int) -> tuple[int, int] | None:
    """The unsigned varint at ``pos`` and the position after it; None if malformed."""
    value = 0
    shift = 0
    stop = min(end, pos + _MAX_VARINT_BYTES)
    while pos < stop:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return (value, pos) if value <= _UINT64_MAX else None
        shift += 7
    return None


def _chunk_view(raw: bytes) -> ChunkView | None:
    """The chunk in ``raw`` if it has the canonical shape, else None (let protobuf decide)."""
    end = len(raw)
    if end < 2 or raw[0] != _CHUNK_TAG:
        return None
    got = _varint(raw, 1, end)
    if got is None or got[1] + got[0] != end:
        return None
    pos = got[1]
    payload_id: str | None = None
    offset: int | None = None
    data: memoryview | None = None
    view = memoryview(raw)
    while pos < end:
        tag = raw[pos]
        pos += 1
        if tag == _OFFSET_TAG and offset is None:
            got = _varint(raw, pos, end)
            if got is None:
                return None
            offset, pos = got
        elif tag == _DATA_TAG and data is None or tag == _PAYLOAD_ID_TAG and payload_id is None:
            got = _varint(raw, pos, end)
            if got is None or got[1] + got[0] > end:
                return None
            start, pos = got[1], got[1] + got[0]
            if tag == _DATA_TAG:
                data = view[start:pos]
            else:
                try:
                    payload_id = str(raw[start:pos], "utf-8")
                except UnicodeDecodeError:
                    return None  # protobuf refuses it, with its own message
        else:
            return None  # another field, a repeated one, or a multi-byte tag
    return ChunkView(payload_id or "", offset or 0, data if data is not None else view[end:end])


def _decode(cls: type[M], raw: bytes) -> M:
    try:
        return cls.FromString(raw)
    except DecodeError as exc:
        raise WireError(
            f"the peer sent a {cls.DESCRIPTOR.name} that protobuf cannot decode "
            f"({len(raw)} bytes): {exc}"
        ) from exc


def parse_node_message(raw: bytes) -> pb.NodeMessage | ChunkView:
    """Decode a ``NodeMessage``; a chunk comes back as a ``ChunkView``.

    Raises
    ------
    WireError
        If ``raw`` is not a valid ``NodeMessage``.
    """
    return _chunk_view(raw) or _decode(pb.NodeMessage, raw)


def parse_coordinator_message(raw: bytes) -> pb.CoordinatorMessage | ChunkView:
    """Decode a ``CoordinatorMessage``; a chunk comes back as a ``ChunkView``.

    Raises
    ------
    WireError
        If ``raw`` is not a valid ``CoordinatorMessage``.
    """
    return _chunk_view(raw) or _decode(pb.CoordinatorMessage, raw)


def _put_varint(out: bytearray, value: int) -> None:
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _varint_len(value: int) -> int:
    return max(1, -(-value.bit_length() // 7))


def chunk_message(payload_id: str, offset: int, pieces: Sequence[memoryview | bytes]) -> bytes:
    """The bytes of a session message (node or coordinator) holding one ``Chunk``.

    Byte for byte what protobuf's ``SerializeToString`` gives for
    ``NodeMessage(chunk=Chunk(payload_id=..., offset=..., data=b"".join(pieces)))`` (and the
    same for ``CoordinatorMessage``), with one copy of the data.

    Raises
    ------
    ConfigError
        If ``offset`` is not a uint64.
    """
    if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset <= _UINT64_MAX:
        raise ConfigError(f"chunk offset must be an int in 0..2**64-1, got {offset!r}")
    pid = payload_id.encode("utf-8")
    size = sum(len(p) for p in pieces)
    inner = 0
    if pid:
        inner += 1 + _varint_len(len(pid)) + len(pid)
    if offset:
        inner += 1 + _varint_len(offset)
    if size:
        inner += 1 + _varint_len(size) + size
    head = bytearray()
    head.append(_CHUNK_TAG)
    _put_varint(head, inner)
    if pid:
        head.append(_PAYLOAD_ID_TAG)
        _put_varint(head, len(pid))
        head += pid
    if offset:
        head.append(_OFFSET_TAG)
        _put_varint(head, offset)
    if size:
        head.append(_DATA_TAG)
        _put_varint(head, size)
    return b"".join((head, *pieces))


def serialize_message(message: Message | bytes) -> bytes:
    """A gRPC serializer: protobuf messages are serialized, prepared bytes pass through."""
    return message if isinstance(message, bytes) else message.SerializeToString()
