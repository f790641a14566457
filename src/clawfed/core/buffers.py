"""``BufferPool``: model-sized byte buffers reused from round to round.

Every round a coordinator receives one update per node into a buffer the size of the model,
and a node receives the global model the same way. A fresh buffer of that size is fresh
memory: the kernel maps and zeroes each page as it is first written (for a 40 MB update,
more CPU than copying the bytes in). A pool hands a buffer out again once nothing uses it.

"Nothing uses it" is read off the reference count: every numpy view, ``memoryview`` and
``Weights`` built on a buffer holds a reference to it (numpy keeps the owning array as the
``base`` of each view), so a buffer whose only references are the pool's own is free. No
caller has to give a buffer back, and one kept by its user (an aggregator that holds every
update, a contribution round that keeps them) is simply not reused. This relies on CPython
reference counting, which is the interpreter clawfed supports.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys
import threading
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from clawfed.core.errors import ConfigError

ByteBuffer = npt.NDArray[np.uint8]

#: References to a pooled buffer that is free: the pool's list, the loop variable and the
#: argument of ``sys.getrefcount`` itself.
_FREE_REFS = 3


class BufferPool:
    """Hands out byte buffers, reusing one of exactly the same size once it is free.

    Parameters
    ----------
    capacity
        How many buffers the pool keeps track of (and so keeps alive between uses). When
        all are in use a request gets a new buffer that the pool does not keep.
    min_bytes
        Smaller requests are plain allocations: reuse only pays off for large buffers.
    """

    def __init__(self, capacity: int, *, min_bytes: int = 1 << 20) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 0:
            raise ConfigError(f"capacity must be an int >= 0, got {capacity!r}")
        if isinstance(min_bytes, bool) or not isinstance(min_bytes, int) or min_bytes < 0:
            raise ConfigError(f"min_bytes must be an int >= 0, got {min_bytes!r}")
        self._capacity = capacity
        self._min_bytes = min_bytes
        self._buffers: list[ByteBuffer] = []
        self._lock = threading.Lock()
        #: Requests served by a reused buffer, and by a new one (for tests and diagnostics).
        self.reused = 0
        self.allocated = 0

    def take(self, nbytes: int) -> ByteBuffer:
        """A writable uint8 buffer of ``nbytes`` bytes; its old contents are arbitrary."""
        if isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes < 0:
            raise ConfigError(f"nbytes must be an int >= 0, got {nbytes!r}")
        if nbytes < self._min_bytes or self._capacity == 0:
            return np.empty(nbytes, dtype=np.uint8)
        with self._lock:
            free_other: int | None = None
            for i in range(len(self._buffers)):
                buf = self._buffers[i]
                if sys.getrefcount(buf) > _FREE_REFS:
                    continue
                if buf.nbytes == nbytes:
                    self.reused += 1
                    return buf
                if free_other is None:
                    free_other = i
            self.allocated += 1
            fresh = np.empty(nbytes, dtype=np.uint8)
            if len(self._buffers) < self._capacity:
                self._buffers.append(fresh)
            elif free_other is not None:  # a free buffer of another size makes room
                self._buffers[free_other] = fresh
            return fresh

    def in_use(self) -> int:
        """How many of the pool's buffers something still refers to."""
        with self._lock:
            return len(self._buffers) - sum(1 for _ in self._free())

    def held_bytes(self) -> int:
        """Bytes of all buffers the pool keeps alive, in use or not."""
        with self._lock:
            return sum(buf.nbytes for buf in self._buffers)

    def trim(self) -> int:
        """Forget the free buffers (their memory goes back once unused); return how many."""
        with self._lock:
            free = {id(buf) for buf in self._free()}
            before = len(self._buffers)
            self._buffers = [buf for buf in self._buffers if id(buf) not in free]
            return before - len(self._buffers)

    def _free(self) -> list[ByteBuffer]:
        out: list[ByteBuffer] = []
        for i in range(len(self._buffers)):
            buf = self._buffers[i]
            if sys.getrefcount(buf) <= _FREE_REFS:
                out.append(buf)
            del buf
        return out


#: Model-sized buffers of this process: received updates and models, aggregation results.
_SHARED = BufferPool(4)


def shared_pool() -> BufferPool:
    """The process's pool for model-sized buffers (received payloads, aggregation results).

    Four buffers cover a round in a coordinator: the global model, the update being
    received, the new model, and one spare.
    """
    return _SHARED


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    trim.argtypes = (ctypes.c_size_t,)
    trim.restype = ctypes.c_int
    return trim


def release_free_heap() -> bool:
    """Hand the free pages inside malloc's heaps back to the kernel (glibc ``malloc_trim``).

    A round passes hundreds of chunk messages through the heap; the holes they leave stay
    resident until trimmed. Called between rounds; a few milliseconds. False where there is
    no glibc.
    """
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
