"""A payload sent to many peers: encoded once, each chunk message kept only while needed."""

from __future__ import annotations

import contextlib
import itertools
import uuid
from collections.abc import Iterator

from clawfed.core.weights import Weights
from clawfed.wire.chunkwire import chunk_message
from clawfed.wire.payload import encode

__all__ = ["CACHE_WINDOW_BYTES", "EncodedModel"]

#: How far (in bytes of chunks) a send may trail the one ahead of it and still share its
#: messages. Sends of one round move together, so a few MiB cover them; a send that falls
#: further behind costs one copy per chunk instead of holding the model twice in memory.
CACHE_WINDOW_BYTES = 4 << 20


class EncodedModel:
    """Global weights encoded once per round, their chunk messages laid out on demand.

    The header (with the SHA-256) is computed once. Each send walks the chunks with a
    ``lease``; a chunk's message is built when the first send reaches it and kept only
    while a send still behind it will need it, so the sends of one round, which move
    together, share each message and hold a few chunks at a time instead of a whole
    model's worth of bytes. A send that starts later, or trails the others by more than
    ``window_bytes``, builds its own messages.
    """

    def __init__(
        self, weights: Weights, chunk_size: int, window_bytes: int = CACHE_WINDOW_BYTES
    ) -> None:
        self._payload = encode(weights, uuid.uuid4().hex, chunk_size)
        #: A message is kept for sends at most this many chunks behind the one that built it;
        #: a send further back builds its own copy when it gets there.
        self._window = max(1, window_bytes // chunk_size)
        self._weights = weights
        self.header = self._payload.header
        self._spans = tuple(self._payload.spans())  # views of the tensors, nothing copied
        self._cache: dict[int, bytes] = {}  # chunk index -> its message
        self._cursors: dict[int, int] = {}  # lease id -> index of the next chunk it sends
        self._ids = itertools.count()
        self.messages_built = 0  # how many chunk messages were laid out (for tests/benches)

    @property
    def weights(self) -> Weights:
        """The weights being sent (must not change while this object is in use)."""
        return self._weights

    @property
    def num_chunks(self) -> int:
        """How many chunk messages one send writes."""
        return len(self._spans)

    @property
    def leased(self) -> bool:
        """Whether a send is under way or some chunk message is still in memory."""
        return bool(self._cursors) or bool(self._cache)

    @property
    def cached_messages(self) -> int:
        """Chunk messages held right now for sends that have not reached them yet."""
        return len(self._cache)

    @contextlib.contextmanager
    def lease(self) -> Iterator[Iterator[bytes]]:
        """Iterate over the serialized ``CoordinatorMessage`` chunks of one send, in order."""
        lease_id = next(self._ids)
        self._cursors[lease_id] = 0
        try:
            yield self._walk(lease_id)
        finally:
            del self._cursors[lease_id]
            self._trim()

    def _walk(self, lease_id: int) -> Iterator[bytes]:
        pid = self._payload.payload_id
        for i, (offset, pieces) in enumerate(self._spans):
            message = self._cache.get(i)
            if message is None:
                message = chunk_message(pid, offset, pieces)
                self.messages_built += 1
                window = self._window
                if any(i - window < c <= i for k, c in self._cursors.items() if k != lease_id):
                    self._cache[i] = message  # another send close behind will need it
            self._cursors[lease_id] = i + 1
            self._trim()
            yield message

    def _trim(self) -> None:
        """Drop every cached message that no send under way still has ahead of it."""
        if not self._cache:
            return
        for i in list(self._cache):
            # the nearest send still behind this message, if it is within the window
            nearest = max((c for c in self._cursors.values() if c <= i), default=None)
            if nearest is None or i - nearest >= self._window:
                del self._cache[i]

    @property
    def nbytes(self) -> int:
        """Bytes of tensor data one peer receives."""
        return int(self.header.total_bytes)
