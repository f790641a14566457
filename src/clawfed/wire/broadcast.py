"""A payload sent to many peers: encoded once, its chunk messages kept only while sent."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

from clawfed.core.weights import Weights
from clawfed.wire.chunkwire import chunk_message
from clawfed.wire.payload import encode

__all__ = ["EncodedModel"]


class EncodedModel:
    """Global weights encoded once per round; their chunk messages exist only while sent.

    The header (with the SHA-256) is computed once. The chunk messages, one model's worth of
    bytes, are laid out on the first ``lease`` and dropped when the last lease ends, so they
    do not stay in memory through the rest of the round (receiving and aggregating).
    """

    def __init__(self, weights: Weights, chunk_size: int) -> None:
        self._payload = encode(weights, uuid.uuid4().hex, chunk_size)
        self._weights = weights
        self.header = self._payload.header
        self._messages: tuple[bytes, ...] | None = None
        self._leases = 0

    @property
    def weights(self) -> Weights:
        """The weights being sent (must not change while this object is in use)."""
        return self._weights

    @property
    def leased(self) -> bool:
        """Whether the chunk messages are in memory (some send holds a lease)."""
        return self._messages is not None

    @contextlib.contextmanager
    def lease(self) -> Iterator[tuple[bytes, ...]]:
        """The serialized ``CoordinatorMessage`` chunks, shared by every send under way."""
        if self._messages is None:
            payload = self._payload
            self._messages = tuple(
                chunk_message(payload.payload_id, offset, pieces)
                for offset, pieces in payload.spans()
            )
        self._leases += 1
        try:
            yield self._messages
        finally:
            self._leases -= 1
            if self._leases == 0:
                self._messages = None

    @property
    def nbytes(self) -> int:
        """Bytes of tensor data one peer receives."""
        return int(self.header.total_bytes)
