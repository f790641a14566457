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
from typing import Any

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


#: glibc's ``mallopt`` parameters: the size from which allocations are mmapped, and the
#: largest number of malloc arenas (heaps) threads may spread over.
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
#: Above a chunk message (1 MiB of tensor bytes and a header by default), so the messages of
#: a round reuse heap memory instead of each mapping, faulting in and zeroing fresh pages;
#: model-sized buffers still get their own mapping, handed back to the kernel when freed.
_MMAP_THRESHOLD_BYTES = 4 << 20
_ARENA_MAX = 2


@functools.cache
def _glibc(name: str, *argtypes: type[ctypes._SimpleCData[Any]]) -> Callable[..., int] | None:
    """glibc's function ``name`` returning int, or None without glibc (musl, macOS)."""
    if not sys.platform.startswith("linux"):
        return None
    lib = ctypes.util.find_library("c")
    if lib is None:
        return None
    try:
        fn = getattr(ctypes.CDLL(lib), name)
    except (OSError, AttributeError):  # not glibc
        return None
    fn.argtypes = argtypes
    fn.restype = ctypes.c_int
    return fn  # type: ignore[no-any-return]


def tune_malloc() -> bool:
    """Pin glibc's mmap threshold at 4 MiB and use at most two malloc arenas; True if set.

    For the long-running processes (coordinator, node). glibc raises the threshold (up to
    32 MiB) each time a mapped block is freed, after which the model-sized temporaries of
    every round (aggregation blocks, artifact copies) come from the heap, and a heap rarely
    shrinks: resident memory then grows by tens of MB over the first rounds and stays there.
    gRPC's threads would each get an arena of their own (up to 8 per core), every one
    keeping freed chunk messages; two arenas measured 10 MB less at the peak of a 10M x 10
    round with no slower rounds.
    """
    mallopt = _glibc("mallopt", ctypes.c_int, ctypes.c_int)
    if mallopt is None:
        return False
    mallopt(_M_ARENA_MAX, _ARENA_MAX)
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES))


def release_free_heap() -> bool:
    """Hand the free pages inside malloc's heaps back to the kernel (glibc ``malloc_trim``).

    A round passes hundreds of chunk messages through the heap; the holes they leave stay
    resident until trimmed. Called between rounds; a few milliseconds. False where there is
    no glibc.
    """
    trim = _glibc("malloc_trim", ctypes.c_size_t)
    if trim is None:
        return False
    trim(0)
    return True
