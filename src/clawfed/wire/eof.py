"""The end-of-stream marker of grpc.aio's read() API, typed for our code."""

from grpc import aio

#: What ``call.read()`` / ``context.read()`` return once the peer is done writing.
STREAM_END: object = aio.EOF  # type: ignore[attr-defined]  # missing from grpc-stubs
