"""The hand-rolled chunk parser and builder agree with protobuf on every input."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from google.protobuf.message import DecodeError, Message
from hypothesis import example, given, settings
from hypothesis import strategies as st

from clawfed.core import ConfigError, Weights
from clawfed.core.errors import WireError
from clawfed.wire import Reassembler, encode
from clawfed.wire._proto import federation_pb2 as pb
from clawfed.wire.chunkwire import (
    ChunkView,
    chunk_message,
    parse_coordinator_message,
    parse_node_message,
    serialize_message,
)

UINT64_MAX = (1 << 64) - 1
Parser = Callable[[bytes], Message | ChunkView]
SESSION_TYPES: list[tuple[type[Message], Parser]] = [
    (pb.NodeMessage, parse_node_message),
    (pb.CoordinatorMessage, parse_coordinator_message),
]


# ---- an independent encoder for hand-made (also non-canonical) messages -----------------


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field(number: int, wire_type: int, body: bytes) -> bytes:
    tag = varint(number << 3 | wire_type)
    if wire_type == 2:
        return tag + varint(len(body)) + body
    return tag + body


def chunk_fields(payload_id: bytes, offset: int, data: bytes) -> list[bytes]:
    return [field(1, 2, payload_id), field(2, 0, varint(offset)), field(3, 2, data)]


def agrees_with_protobuf(cls: type[Message], parse: Parser, raw: bytes) -> None:
    """What ``parse`` makes of ``raw`` is what protobuf makes of it, or both refuse it."""
    try:
        want = cls.FromString(raw)
    except DecodeError:
        with pytest.raises(WireError, match=f"{cls.DESCRIPTOR.name} that protobuf cannot decode"):
            parse(raw)
        return
    got = parse(raw)
    if isinstance(got, ChunkView):
        assert want.WhichOneof("body") == "chunk"
        assert (got.payload_id, got.offset, bytes(got.data)) == (
            want.chunk.payload_id,
            want.chunk.offset,
            want.chunk.data,
        )
    else:
        assert got == want


# ---- canonical chunks -----------------------------------------------------------------

payload_ids = st.text(max_size=40)
offsets = st.integers(0, UINT64_MAX)
datas = st.binary(max_size=3000)


@settings(max_examples=300, deadline=None)
@given(payload_id=payload_ids, offset=offsets, data=datas, kind=st.sampled_from(SESSION_TYPES))
@example(payload_id="", offset=0, data=b"", kind=SESSION_TYPES[0])
def test_protobuf_chunks_parse_to_views_of_the_same_fields(
    payload_id: str, offset: int, data: bytes, kind: tuple[type[Message], Parser]
) -> None:
    cls, parse = kind
    raw = cls(chunk=pb.Chunk(payload_id=payload_id, offset=offset, data=data)).SerializeToString()
    got = parse(raw)
    assert isinstance(got, ChunkView)
    assert (got.payload_id, got.offset, bytes(got.data)) == (payload_id, offset, data)
    assert isinstance(got.data, memoryview) and got.data.obj is raw  # a view, not a copy


@settings(max_examples=300, deadline=None)
@given(
    payload_id=payload_ids,
    offset=offsets,
    data=datas,
    cuts=st.lists(st.integers(0, 3000), max_size=4),
    cls=st.sampled_from([pb.NodeMessage, pb.CoordinatorMessage]),
)
def test_built_messages_are_byte_for_byte_protobufs(
    payload_id: str, offset: int, data: bytes, cuts: list[int], cls: type[Message]
) -> None:
    bounds = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
    pieces = [memoryview(data)[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    built = chunk_message(payload_id, offset, pieces)
    want = cls(chunk=pb.Chunk(payload_id=payload_id, offset=offset, data=data))
    assert built == want.SerializeToString()


def test_a_large_chunk_round_trips() -> None:
    data = bytes(range(256)) * 8192  # 2 MiB: multi-byte lengths everywhere
    raw = chunk_message("p" * 32, 5 << 40, [memoryview(data)[:1000], memoryview(data)[1000:]])
    got = parse_node_message(raw)
    assert isinstance(got, ChunkView)
    assert (got.payload_id, got.offset, got.data.tobytes()) == ("p" * 32, 5 << 40, data)


# ---- everything else goes to protobuf ------------------------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        pb.NodeMessage(hello=pb.Hello(protocol_version=1, software_version="1.0")),
        pb.NodeMessage(heartbeat=pb.Heartbeat(sent_at_unix=12.5)),
        pb.NodeMessage(result=pb.TaskResult(task_id="t", failure=pb.TaskFailure(code="x"))),
        pb.NodeMessage(goodbye=pb.Goodbye(code="stopping", message="bye")),
        pb.NodeMessage(),
    ],
)
def test_other_node_messages_are_protobuf_messages(message: pb.NodeMessage) -> None:
    got = parse_node_message(message.SerializeToString())
    assert isinstance(got, pb.NodeMessage)
    assert got == message


@pytest.mark.parametrize(
    "message",
    [
        pb.CoordinatorMessage(welcome=pb.Welcome(node_id="n", chunk_size=1 << 20)),
        pb.CoordinatorMessage(task=pb.Task(task_id="t", round=3)),
        pb.CoordinatorMessage(cancel=pb.CancelTask(task_id="t", reason="deadline")),
    ],
)
def test_other_coordinator_messages_are_protobuf_messages(
    message: pb.CoordinatorMessage,
) -> None:
    got = parse_coordinator_message(message.SerializeToString())
    assert isinstance(got, pb.CoordinatorMessage)
    assert got == message


NON_CANONICAL = {
    # fields in another order: still the fast path
    "reordered": field(4, 2, b"".join(reversed(chunk_fields(b"id", 7, b"abc")))),
    # a repeated field: protobuf keeps the last value
    "repeated data": field(4, 2, b"".join([*chunk_fields(b"id", 7, b"abc"), field(3, 2, b"z")])),
    "repeated id": field(4, 2, field(1, 2, b"a") + field(1, 2, b"b")),
    # an unknown field inside the chunk: protobuf skips it
    "unknown field": field(4, 2, b"".join([*chunk_fields(b"id", 7, b"abc"), field(9, 0, b"\x01")])),
    # the chunk field twice: protobuf merges the two
    "two chunk fields": field(4, 2, field(1, 2, b"a")) + field(4, 2, field(3, 2, b"data")),
    # a chunk, then another body of the oneof: the last one wins
    "chunk then heartbeat": field(4, 2, field(3, 2, b"x")) + field(2, 2, b""),
    "heartbeat then chunk": field(2, 2, b"") + field(4, 2, field(3, 2, b"x")),
    # a varint written longer than needed
    "padded varint": b"\x22\x05\x10\x87\x80\x80\x00",
    "empty chunk": b"\x22\x00",
}


@pytest.mark.parametrize("raw", NON_CANONICAL.values(), ids=NON_CANONICAL.keys())
@pytest.mark.parametrize("kind", SESSION_TYPES, ids=["node", "coordinator"])
def test_non_canonical_encodings_decode_as_protobuf_does(
    raw: bytes, kind: tuple[type[Message], Parser]
) -> None:
    agrees_with_protobuf(*kind, raw)


# ---- malformed input ----------------------------------------------------------------------

MALFORMED = {
    "truncated data": field(4, 2, field(3, 2, b"abcdef"))[:-2],
    "length past the end": b"\x22\x05\x1a\x10abc",
    "inner length past the chunk": b"\x22\x03\x1a\x09abc",
    "unterminated varint": b"\x22\x03\x10\xff\xff",
    "invalid utf-8 id": field(4, 2, field(1, 2, b"\xff\xfe")),
    "surrogate in id": field(4, 2, field(1, 2, b"\xed\xa0\x80")),
    "field number zero": b"\x02\x00",
    "wrong wire type for offset": field(4, 2, field(2, 2, b"xx")),
    "end group without start": b"\x24",
}


@pytest.mark.parametrize("raw", MALFORMED.values(), ids=MALFORMED.keys())
@pytest.mark.parametrize("kind", SESSION_TYPES, ids=["node", "coordinator"])
def test_malformed_messages_are_a_wire_error_or_what_protobuf_decodes(
    raw: bytes, kind: tuple[type[Message], Parser]
) -> None:
    agrees_with_protobuf(*kind, raw)


@pytest.mark.parametrize("kind", SESSION_TYPES, ids=["node", "coordinator"])
def test_undecodable_bytes_name_the_message_and_size(kind: tuple[type[Message], Parser]) -> None:
    cls, parse = kind
    with pytest.raises(WireError) as info:
        parse(b"\x22\x05\x1a\x10abc")
    assert f"{cls.DESCRIPTOR.name} that protobuf cannot decode (7 bytes)" in str(info.value)
    assert isinstance(info.value.__cause__, DecodeError)


@settings(max_examples=400, deadline=None)
@given(raw=st.binary(max_size=64), kind=st.sampled_from(SESSION_TYPES))
def test_random_bytes_never_crash_and_agree_with_protobuf(
    raw: bytes, kind: tuple[type[Message], Parser]
) -> None:
    agrees_with_protobuf(*kind, raw)


@settings(max_examples=400, deadline=None)
@given(
    payload_id=payload_ids,
    offset=offsets,
    data=st.binary(max_size=300),
    edits=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=3),
    cut=st.integers(0, 400),
    kind=st.sampled_from(SESSION_TYPES),
)
def test_damaged_chunks_never_crash_and_agree_with_protobuf(
    payload_id: str,
    offset: int,
    data: bytes,
    edits: list[tuple[int, int]],
    cut: int,
    kind: tuple[type[Message], Parser],
) -> None:
    raw = bytearray(chunk_message(payload_id, offset, [data]))
    for pos, byte in edits:
        if pos < len(raw):
            raw[pos] = byte
    agrees_with_protobuf(*kind, bytes(raw[: max(cut, 1)]))


@pytest.mark.parametrize("offset", [-1, 1 << 64, True, 1.0])
def test_bad_offsets_are_refused_when_building(offset: object) -> None:
    with pytest.raises(ConfigError, match=r"chunk offset must be an int in 0\.\.2\*\*64-1"):
        chunk_message("p", offset, [b"x"])  # type: ignore[arg-type]


def test_serialize_message_passes_bytes_through() -> None:
    raw = chunk_message("p", 1, [b"abc"])
    assert serialize_message(raw) is raw
    hello = pb.NodeMessage(hello=pb.Hello(protocol_version=1))
    assert serialize_message(hello) == hello.SerializeToString()


# ---- with the reassembler ---------------------------------------------------------------


def test_reassembler_takes_views_from_built_messages() -> None:
    rng = np.random.default_rng(7)
    weights = Weights(
        {
            "a": rng.standard_normal((33, 17)).astype(np.float32),
            "b": rng.integers(-5, 5, size=1000).astype(np.int64),
            "c": np.array(2.5),
        }
    )
    payload = encode(weights, "pid-1", chunk_size=1024)
    messages = [chunk_message("pid-1", off, pieces) for off, pieces in payload.spans()]
    assert len(messages) == payload.num_chunks
    reassembler = Reassembler(payload.header, max_total_bytes=1 << 20)
    for raw in messages:
        view = parse_coordinator_message(raw)
        assert isinstance(view, ChunkView)
        reassembler.add(view)
    got = reassembler.finish()
    assert list(got) == list(weights)
    for name in weights:
        np.testing.assert_array_equal(got[name], weights[name])
        assert got[name].dtype == weights[name].dtype


def test_chunk_view_repr_does_not_dump_the_data() -> None:
    view = parse_node_message(chunk_message("pid", 3, [b"x" * 5000]))
    assert repr(view) == "ChunkView(payload_id='pid', offset=3, data=<5000 bytes>)"
