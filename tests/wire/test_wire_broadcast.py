"""``EncodedModel``: one header, chunk messages laid out once and kept only while leased."""

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
        assert len(messages) == -(-model.nbytes // 1024)
        r = Reassembler(model.header, max_total_bytes=model.nbytes)
        for raw in messages:
            chunk = parse_coordinator_message(raw)
            assert isinstance(chunk, ChunkView)
            assert chunk.payload_id == model.header.payload_id
            r.add(chunk)
    got = r.finish()
    for name, arr in w.items():
        np.testing.assert_array_equal(got[name], arr)


def test_messages_are_shared_while_leased_and_dropped_after_the_last_lease() -> None:
    model = EncodedModel(model_weights(), 1024)
    assert not model.leased  # nothing laid out before the first send
    with model.lease() as first:
        with model.lease() as second:
            assert second is first  # laid out once for every concurrent send
        assert model.leased  # the first send is still under way
    assert not model.leased
    with model.lease() as again:
        assert again == first and again is not first  # laid out anew for a later send
    assert not model.leased


def test_a_failing_send_still_ends_its_lease() -> None:
    model = EncodedModel(model_weights(), 1024)
    try:
        with model.lease():
            raise ConnectionError("stream broke")
    except ConnectionError:
        pass
    assert not model.leased
