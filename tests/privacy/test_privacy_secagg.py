"""Secure aggregation end to end: the sum is right, dropouts are survived up to n - t."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from privacy_secagg_support import Relay, expected_sum, make_config, random_updates

from clawfed.privacy import SecAggError, SecAggFailure, SecAggResult
from clawfed.privacy.secagg_graph import graph_seed, neighbourhoods


def assert_sum(result: SecAggResult, want: dict[str, np.ndarray], weight: int) -> None:
    assert result.total_weight == weight
    for name, arr in want.items():
        err = np.abs(np.asarray(result.weighted_sum[name]) - arr).max()
        assert err <= result.error_bound + 1e-9, (name, err, result.error_bound)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(3, 7),
    data=st.data(),
    seed=st.integers(0, 2**31),
    frac_bits=st.integers(8, 20),
)
def test_unmasked_sum_equals_plain_sum(
    n: int, data: st.DataObject, seed: int, frac_bits: int
) -> None:
    t = data.draw(st.integers(n // 2 + 1, n), label="threshold")
    cfg = make_config(n, t, frac_bits=frac_bits)
    updates, weights = random_updates(cfg, seed, scale=1.5)  # some values beyond the clip
    result = Relay(cfg, seed=str(seed)).run(updates, weights)
    want, weight = expected_sum(cfg, updates, weights, cfg.participants)
    assert_sum(result, want, weight)
    mean = result.mean()
    assert np.allclose(mean["w"], want["w"] / weight, atol=result.error_bound / weight + 1e-12)
    assert result.masked == cfg.participants


def test_ring_grows_to_64_bits_when_32_would_wrap() -> None:
    cfg = make_config(5, 3, max_weight=100_000, frac_bits=20)
    assert cfg.fixed_point.ring_bits == 64
    updates, weights = random_updates(cfg, 7)
    result = Relay(cfg).run(updates, weights)
    assert_sum(result, *expected_sum(cfg, updates, weights, cfg.participants))


PHASES = ("never", "after_keys", "after_shares", "after_masked")


@pytest.mark.parametrize("phase", PHASES)
def test_dropouts_up_to_n_minus_t_at_each_phase(phase: str) -> None:
    cfg = make_config(7, 4)
    updates, weights = random_updates(cfg, 3)
    gone = {"c01", "c04", "c06"}  # n - t = 3
    result = Relay(cfg).run(updates, weights, **{phase: gone})
    # a client dropped after sending its masked input still counts: its input is in the sum
    members = cfg.participants if phase == "after_masked" else sorted(set(cfg.participants) - gone)
    assert_sum(result, *expected_sum(cfg, updates, weights, members))
    assert result.masked == tuple(c for c in cfg.participants if c in set(members))


def test_dropouts_spread_over_all_phases() -> None:
    cfg = make_config(8, 5)
    updates, weights = random_updates(cfg, 11)
    result = Relay(cfg).run(
        updates, weights, after_keys={"c00"}, after_shares={"c03"}, after_masked={"c07"}
    )
    members = [c for c in cfg.participants if c not in {"c00", "c03"}]
    assert_sum(result, *expected_sum(cfg, updates, weights, members))
    assert result.shared == tuple(c for c in cfg.participants if c != "c00")
    assert "c07" not in result.unmasked and "c07" in result.masked


@pytest.mark.parametrize(
    ("phase", "missed"),
    [
        ("never", "advertised keys"),
        ("after_keys", "shared keys"),
        ("after_shares", "sent masked inputs"),
        ("after_masked", "answered the unmask request"),
    ],
)
def test_more_dropouts_fail_the_round_with_a_clear_reason(phase: str, missed: str) -> None:
    cfg = make_config(6, 4)
    updates, weights = random_updates(cfg, 5)
    gone = {"c00", "c02", "c05"}  # n - t + 1
    with pytest.raises(SecAggError) as info:
        Relay(cfg).run(updates, weights, **{phase: gone})
    err = info.value
    assert err.reason is SecAggFailure.TOO_FEW_CLIENTS
    assert f"only 3 of 6 client(s) {missed}, threshold is 4" in str(err)


def _spread_dropouts(graph: dict[str, frozenset[str]], count: int, slack: int) -> list[str]:
    """Clients to drop so that no client loses more than ``slack`` of its share holders."""
    chosen: list[str] = []
    for cand in sorted(graph):
        trial = {*chosen, cand}
        if all(len((graph[u] | {u}) & trial) <= slack for u in graph):
            chosen.append(cand)
        if len(chosen) == count:
            return chosen
    raise AssertionError("graph too small for the wanted dropouts")


def test_secagg_plus_gives_the_same_sum_with_dropouts() -> None:
    cfg = make_config(14, 3, neighbours=4)
    updates, weights = random_updates(cfg, 21)
    relay = Relay(cfg, seed="plus")
    members = list(cfg.participants)
    directory = relay.advertise(members)
    seed = graph_seed(cfg.digest(), directory.nonce, directory.key_material())
    graph = dict(neighbourhoods(members, 4, seed))
    assert all(len(near) == 4 for near in graph.values())
    late_share, late_mask, late_unmask = _spread_dropouts(graph, 3, slack=2)
    inboxes = relay.share([c for c in members if c != late_share])
    for v, box in inboxes.items():  # shares come from exactly the surviving neighbours
        assert {s.sender for s in box.shares} == graph[v] - {late_share}
    maskers = [c for c in inboxes if c != late_mask]
    relay.mask(maskers, updates, weights)
    result = relay.unmask([c for c in maskers if c != late_unmask])
    assert_sum(result, *expected_sum(cfg, updates, weights, maskers))


def test_secagg_plus_fails_cleanly_when_a_neighbourhood_loses_its_majority() -> None:
    cfg = make_config(14, 3, neighbours=4)
    updates, weights = random_updates(cfg, 22)
    relay = Relay(cfg, seed="plus")
    directory = relay.advertise(cfg.participants)
    seed = graph_seed(cfg.digest(), directory.nonce, directory.key_material())
    graph = neighbourhoods(cfg.participants, 4, seed)
    victim = "c06"
    gone = sorted(graph[victim])[:3]  # 3 of its 5 holders drop before sharing
    with pytest.raises(SecAggError) as info:
        relay.share([c for c in cfg.participants if c not in gone])
    assert info.value.reason is SecAggFailure.TOO_FEW_CLIENTS


def test_secagg_plus_matches_the_complete_graph() -> None:
    plus = make_config(12, 3, neighbours=4)
    full = make_config(12, 7)
    updates, weights = random_updates(full, 2)
    a = Relay(plus).run(updates, weights, after_shares={"c03"})
    b = Relay(full).run(updates, weights, after_shares={"c03"})
    assert a.total_weight == b.total_weight
    for name in ("w", "b"):
        assert (
            np.abs(np.asarray(a.weighted_sum[name]) - b.weighted_sum[name]).max()
            <= 2 * a.error_bound
        )


def test_each_masked_input_differs_from_the_input_and_between_sessions() -> None:
    cfg = make_config(4, 3)
    updates, weights = random_updates(cfg, 9)
    one = Relay(cfg, seed="one")
    one.run(updates, weights)
    two = Relay(cfg, seed="two")
    two.run(updates, weights)
    plain = cfg.fixed_point.encode(updates["c00"], weights["c00"], cfg.model)
    assert not np.array_equal(one.masked["c00"].vector, plain)
    assert not np.array_equal(one.masked["c00"].vector, two.masked["c00"].vector)
