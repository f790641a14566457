"""``EncodedModel``: one header, chunk messages laid out on demand and kept only while needed."""

from __future__ import annotations

import hashlib

import numpy as np

from clawfed.core import Weights
from clawfed.wire import Reassembler
from clawfed.wire.broadcast import EncodedModel
from clawfed.wire.chunkwire import ChunkView, parse_coordinator_message


def model_weights() -> Weights:
    rng = np.random.default_rng(3)
    return Weights(
        {
            "layer.w": rng.standard_normal((40, 30)).astype(np.float32),
            "layer.b": rng.standard_normal(30).astype(np.float64),
        }
    )


def test_header_announces_the_weights() -> None:
    w = model_weights()
    model = EncodedModel(w, 1024)
    raw = b"".join(a.astype(a.dtype.newbyteorder("<")).tobytes() for a in w.values())
    assert model.nbytes == len(raw) == model.header.total_bytes
    assert model.header.sha256 == hashlib.sha256(raw).digest()
    assert [t.name for t in model.header.tensors] == ["layer.w", "layer.b"]
    assert model.weights is w
    assert EncodedModel(w, 1024).header.payload_id != model.header.payload_id


def test_leased_messages_reassemble_to_the_weights() -> None:
    w = model_weights()
    model = EncodedModel(w, 1024)
    with model.lease() as messages:
        raws = list(messages)
    assert len(raws) == model.num_chunks == -(-model.nbytes // 1024)
    r = Reassembler(model.header, max_total_bytes=model.nbytes)
    for raw in raws:
        chunk = parse_coordinator_message(raw)
        assert isinstance(chunk, ChunkView)
        assert chunk.payload_id == model.header.payload_id
        r.add(chunk)
    got = r.finish()
    for name, arr in w.items():
        np.testing.assert_array_equal(got[name], arr)


def test_sends_in_step_share_each_message_and_nothing_stays_behind_them() -> None:
    model = EncodedModel(model_weights(), 1024)
    assert not model.leased  # nothing laid out before the first send
    with model.lease() as first, model.lease() as second:
        for a, b in zip(first, second, strict=True):
            assert a is b  # built once for both sends
            assert model.cached_messages == 0  # both have passed it: dropped at once
    assert model.messages_built == model.num_chunks
    assert not model.leased


def test_a_send_ahead_keeps_messages_only_for_the_send_behind_it() -> None:
    model = EncodedModel(model_weights(), 1024)
    n = model.num_chunks
    with model.lease() as behind, model.lease() as ahead:
        lead = [next(ahead) for _ in range(3)]
        assert model.cached_messages == 3  # kept for ``behind``, which has not sent them
        trail = [next(behind) for _ in range(2)]
        assert trail == lead[:2] and trail[0] is lead[0]
        assert model.cached_messages == 1  # only the one ``behind`` still needs
        rest_ahead = list(ahead)
        assert len(rest_ahead) == n - 3
        assert model.cached_messages == n - 2  # everything ``behind`` has yet to send
    assert not model.leased  # ``behind`` gave up: nothing is kept for it
    with model.lease() as again:
        assert list(again)[0] == lead[0]  # laid out anew for a later send
    assert not model.leased


def test_a_failing_send_still_ends_its_lease() -> None:
    model = EncodedModel(model_weights(), 1024)
    try:
        with model.lease():
            raise ConnectionError("stream broke")
    except ConnectionError:
        pass
    assert not model.leased


def test_a_send_far_behind_builds_its_own_messages_and_the_cache_stays_in_the_window() -> None:
    # 10 chunks of 1 KiB; messages are shared only with a send at most 3 chunks behind
    model = EncodedModel(Weights({"w": np.arange(2560, dtype=np.float32)}), 1024, 3 * 1024)
    assert model.num_chunks == 10
    with model.lease() as ahead, model.lease() as behind:
        lead = [next(ahead) for _ in range(3)]  # ahead by 3: still within the window
        assert model.cached_messages == 3
        lead += [next(ahead) for _ in range(4)]  # ahead by 7: the older ones are dropped
        assert model.cached_messages <= 3
        trail = list(behind)
        lead += list(ahead)
    assert trail == lead  # same bytes either way
    assert model.cached_messages == 0
    assert model.num_chunks < model.messages_built <= 2 * model.num_chunks
