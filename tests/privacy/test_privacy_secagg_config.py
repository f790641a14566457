"""Secure-aggregation settings: fixed-point rings, session configs and neighbour graphs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from privacy_secagg_support import MODEL, make_config

from clawfed.core import ConfigError, TensorSpec, UpdateRejected, Weights
from clawfed.privacy import FixedPoint, SecAggConfig, SecAggError, SecAggFailure, secagg_plus_degree
from clawfed.privacy.secagg_graph import neighbourhoods


def test_ring_is_chosen_from_clients_range_and_precision() -> None:
    small = FixedPoint.choose(clip=1.0, frac_bits=16, max_weight=1000, max_clients=10)
    assert small.ring_bits == 32
    big = FixedPoint.choose(clip=1.0, frac_bits=16, max_weight=1000, max_clients=100)
    assert big.ring_bits == 64  # 100 · 1000 · 2^16 > 2^31
    with pytest.raises(ConfigError, match="wraps around"):
        FixedPoint(1.0, 16, 1000, 100, 32)
    with pytest.raises(ConfigError, match="2\\^52"):
        FixedPoint.choose(clip=1.0, frac_bits=40, max_weight=10**6, max_clients=10)
    with pytest.raises(ConfigError, match="wraps around in Z_2\\^64"):
        FixedPoint.choose(clip=1.0, frac_bits=30, max_weight=2**20, max_clients=2**20)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 50),
    frac_bits=st.integers(0, 24),
    clip=st.floats(0.01, 100.0),
    max_weight=st.integers(1, 5000),
    seed=st.integers(0, 2**31),
)
def test_sum_of_encodings_decodes_within_the_bound(
    n: int, frac_bits: int, clip: float, max_weight: int, seed: int
) -> None:
    try:
        fp = FixedPoint.choose(clip=clip, frac_bits=frac_bits, max_weight=max_weight, max_clients=n)
    except ConfigError:
        return  # no ring fits: refused up front, never wrapped
    rng = np.random.default_rng(seed)
    model = (TensorSpec("v", "float64", (16,)),)
    acc = np.zeros(17, dtype=np.uint32 if fp.ring_bits == 32 else np.uint64)
    want = np.zeros(16)
    total_w = 0
    for _ in range(n):
        x = rng.uniform(-2 * clip, 2 * clip, 16)  # half beyond the clip
        w = int(rng.integers(1, max_weight + 1))
        acc += fp.encode(Weights({"v": x}), w, model)
        want += w * np.clip(x, -clip, clip)
        total_w += w
    got, weight = fp.decode(acc, model, n)
    assert weight == total_w
    assert np.abs(got["v"] - want).max() <= fp.error_bound(n) + 1e-9 * np.abs(want).max()


def test_weights_are_capped_and_validated() -> None:
    fp = FixedPoint.choose(clip=1.0, frac_bits=8, max_weight=50, max_clients=3)
    model = (TensorSpec("v", "float32", (2,)),)
    vec = fp.encode(Weights({"v": np.ones(2, np.float32)}), 10_000, model)
    assert int(vec[-1]) == 50 and int(vec[0]) == 50 * 256
    with pytest.raises(ConfigError):
        fp.capped_weight(0)
    with pytest.raises(UpdateRejected):
        fp.encode(Weights({"v": np.array([np.nan, 0], np.float32)}), 1, model)
    with pytest.raises(UpdateRejected):
        fp.encode(Weights({"v": np.ones(3, np.float32)}), 1, model)


def test_decoding_garbage_reports_wrap_around() -> None:
    fp = FixedPoint.choose(clip=1.0, frac_bits=8, max_weight=5, max_clients=3)
    model = (TensorSpec("v", "float32", (2,)),)
    garbage = np.array([1, 2, 123456], dtype=np.uint32)
    with pytest.raises(SecAggError) as info:
        fp.decode(garbage, model, 2)
    assert info.value.reason is SecAggFailure.WRAP_AROUND


def test_config_validation_names_the_rule() -> None:
    with pytest.raises(ConfigError, match=r"threshold must be an int in \(3, 7\]"):
        make_config(7, 3)
    with pytest.raises(ConfigError, match="even"):
        make_config(12, 3, neighbours=3)
    with pytest.raises(ConfigError, match="complete graph"):
        make_config(5, 3, neighbours=4)
    with pytest.raises(ConfigError, match=r"threshold must be an int in \(2, 5\]"):
        make_config(12, 2, neighbours=4)
    fp = FixedPoint.choose(clip=1.0, frac_bits=8, max_weight=5, max_clients=2)
    with pytest.raises(ConfigError, match="max_clients"):
        SecAggConfig("s", ("a", "b", "c"), 2, fp, MODEL)
    with pytest.raises(ConfigError, match="unique"):
        SecAggConfig("s", ("a", "a"), 2, fp, MODEL)
    with pytest.raises(ConfigError, match="at least 2"):
        SecAggConfig("s", ("a",), 1, fp, MODEL)
    with pytest.raises(ConfigError, match="not a participant"):
        make_config(3, 2).index("zed")


def test_config_round_trips_and_its_digest_binds_every_field() -> None:
    cfg = make_config(12, 3, neighbours=4)
    again = SecAggConfig.from_json(cfg.to_json())
    assert again == cfg and again.digest() == cfg.digest()
    other = make_config(12, 3, neighbours=4, session="job/1/2")
    assert other.digest() != cfg.digest()
    with pytest.raises(ConfigError, match="malformed"):
        SecAggConfig.from_dict({"session_id": "x"})
    with pytest.raises(ConfigError, match="not JSON"):
        SecAggConfig.from_json("{")


def test_secagg_plus_degree_grows_logarithmically() -> None:
    assert secagg_plus_degree(7) is None  # 2·3 = 6 = n - 1: complete anyway
    assert secagg_plus_degree(8) == 6
    assert secagg_plus_degree(100) == 14
    assert secagg_plus_degree(1000) == 20
    with pytest.raises(ConfigError):
        secagg_plus_degree(1)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(3, 60), half=st.integers(1, 6), seed=st.binary(min_size=32, max_size=32))
def test_harary_graph_is_regular_symmetric_and_seed_dependent(
    n: int, half: int, seed: bytes
) -> None:
    k = 2 * half
    ids = [f"n{i}" for i in range(n)]
    graph = neighbourhoods(ids, k, seed)
    degree = min(k, n - 1)
    assert all(len(graph[u]) == degree and u not in graph[u] for u in ids)
    assert all(u in graph[v] for u in ids for v in graph[u])
    assert neighbourhoods(list(reversed(ids)), k, seed) == graph  # order-independent


def test_different_seeds_give_different_graphs() -> None:
    ids = [f"n{i}" for i in range(40)]
    a = neighbourhoods(ids, 6, b"a" * 32)
    b = neighbourhoods(ids, 6, b"b" * 32)
    assert a != b
    assert neighbourhoods(ids, None, b"a" * 32)["n0"] == frozenset(ids) - {"n0"}
