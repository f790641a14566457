"""``BufferPool``: a buffer is handed out again only once nothing refers to it."""

from __future__ import annotations

import numpy as np
import pytest

from clawfed.core import ConfigError, Weights
from clawfed.core.buffers import BufferPool, release_free_heap
from clawfed.wire import Reassembler, encode


def test_a_free_buffer_of_the_same_size_is_reused() -> None:
    pool = BufferPool(2, min_bytes=16)
    first = pool.take(100)
    first_id = id(first)
    del first
    again = pool.take(100)
    assert id(again) == first_id
    assert (pool.allocated, pool.reused) == (1, 1)


def test_a_buffer_still_seen_through_a_view_or_memoryview_is_not_reused() -> None:
    pool = BufferPool(3, min_bytes=16)
    a = pool.take(64)
    view = a[8:16].view(np.uint32)  # numpy keeps ``a`` as the view's base
    del a
    b = pool.take(64)
    assert pool.reused == 0
    b[:] = 1
    mv = memoryview(b)
    del b
    c = pool.take(64)
    assert pool.reused == 0 and pool.in_use() == 3
    c[:] = 7
    assert mv[0] == 1  # the buffer behind the memoryview was not handed out again
    del view, mv, c
    assert pool.in_use() == 0
    pool.take(64)
    assert pool.reused == 1


def test_capacity_bounds_what_the_pool_keeps_and_trim_lets_go() -> None:
    pool = BufferPool(1, min_bytes=16)
    a = pool.take(32)
    b = pool.take(32)  # the one kept buffer is in use: a plain allocation
    assert pool.held_bytes() == 32 and pool.allocated == 2
    del a, b
    c = pool.take(48)  # a free buffer of another size makes room for this one
    assert pool.held_bytes() == 48
    del c
    assert pool.trim() == 1 and pool.held_bytes() == 0


def test_small_requests_and_bad_arguments() -> None:
    pool = BufferPool(2)  # 1 MiB minimum by default
    small = pool.take(10)
    assert small.nbytes == 10 and pool.held_bytes() == 0
    with pytest.raises(ConfigError, match="capacity"):
        BufferPool(-1)
    with pytest.raises(ConfigError, match="nbytes"):
        pool.take(-5)


def test_reassembled_payloads_reuse_the_buffer_of_one_no_longer_used() -> None:
    pool = BufferPool(2, min_bytes=16)
    payload = encode(Weights({"w": np.arange(1000, dtype=np.float32)}), "p", 1024)

    def receive() -> Weights:
        r = Reassembler(payload.header, max_total_bytes=1 << 20, pool=pool)
        for chunk in payload.chunks():
            r.add(chunk)
        return r.finish()

    first = receive()
    kept = first["w"]  # a user holding on to one tensor keeps its buffer
    del first
    second = receive()
    assert pool.reused == 0
    np.testing.assert_array_equal(second["w"], kept)
    del kept
    third = receive()  # the first payload's buffer is free again
    assert pool.reused == 1
    np.testing.assert_array_equal(third["w"], second["w"])


def test_release_free_heap_runs_on_glibc() -> None:
    import sys

    assert release_free_heap() is sys.platform.startswith("linux")
