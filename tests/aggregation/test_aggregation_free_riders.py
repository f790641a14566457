"""Free riders: copies of the global model, pure noise and replays are flagged; honest nodes not."""

from __future__ import annotations

import numpy as np
import pytest

from clawfed.aggregation import FedAvg, TooFewUpdates
from clawfed.aggregation.anomaly import UpdateSketch, UpdateSketcher
from clawfed.aggregation.free_riders import (
    FreeRiderDetector,
    FreeRiderKind,
    FreeRiderPolicy,
    FreeRiderSettings,
    ScreenedAggregator,
)
from clawfed.core import ConfigError, JobError, Update, Weights


class _Federation:
    """Honest nodes share a drifting direction plus their own noise; three free riders."""

    def __init__(self, d: int, seed: int, honest: int = 6) -> None:
        self.d = d
        self.rng = np.random.default_rng(seed)
        self.honest = [f"h{i}" for i in range(honest)]
        self.direction = self.rng.normal(size=d)
        self.seen: list[np.ndarray] = []

    def round(self) -> dict[str, np.ndarray]:
        self.direction = 0.8 * self.direction + 0.6 * self.rng.normal(size=self.d)
        ups = {h: self.direction + 0.7 * self.rng.normal(size=self.d) for h in self.honest}
        typical = float(np.linalg.norm(ups["h0"]))
        noise = self.rng.normal(size=self.d)
        ups["copier"] = np.zeros(self.d)
        ups["noisy"] = noise * typical / np.linalg.norm(noise)
        ups["replayer"] = self.seen[0] if self.seen else ups["h0"] * 1.01 + 0.5
        self.seen.append(ups["h1"])
        return {k: v.astype(np.float32) for k, v in ups.items()}


def _sketches(sk: UpdateSketcher, ups: dict[str, np.ndarray]) -> dict[str, UpdateSketch]:
    return {n: sk.sketch(Weights({"w": v})) for n, v in ups.items()}


@pytest.mark.parametrize(("d", "dim"), [(600, 8192), (60_000, 2048)])
def test_each_kind_is_detected_and_honest_nodes_are_never_flagged(d: int, dim: int) -> None:
    fed = _Federation(d, seed=d)
    sk = UpdateSketcher(Weights({"w": np.zeros(d, np.float32)}).spec(), dim=dim)
    assert sk.exact == (d <= dim)
    det = FreeRiderDetector()
    for round_no in range(1, 9):
        flags = det.inspect(round_no, _sketches(sk, fed.round()))
        by_node = {f.node_id: f.kind for f in flags}
        expected = {"copier": FreeRiderKind.COPY_GLOBAL, "noisy": FreeRiderKind.NOISE}
        if round_no > 1:  # from round 2 on it resends h1's update of round 1 (and so its own
            expected["replayer"] = FreeRiderKind.REPLAY  # replays, once round 1 is forgotten)
        assert by_node == expected, f"round {round_no}: {flags}"
        if round_no == 2:
            replay = next(f for f in flags if f.kind is FreeRiderKind.REPLAY)
            assert "node h1" in replay.evidence and "round 1" in replay.evidence
    assert det.fingerprints == det.settings.history_rounds * 8  # the copier is not remembered


def test_near_replay_with_tiny_noise_and_same_round_copies_are_caught() -> None:
    rng = np.random.default_rng(0)
    sk = UpdateSketcher(Weights({"w": np.zeros(50_000, np.float32)}).spec(), dim=4096)
    base = {f"h{i}": rng.normal(size=50_000).astype(np.float32) + 1.0 for i in range(4)}
    det = FreeRiderDetector(FreeRiderSettings(replay_tol=1e-3))
    assert det.inspect(1, _sketches(sk, base)) == ()
    fresh = {f"h{i}": rng.normal(size=50_000).astype(np.float32) + 1.0 for i in range(4)}
    fresh["sneaky"] = base["h2"] + (1e-5 * rng.normal(size=50_000)).astype(np.float32)
    fresh["twin"] = fresh["h0"].copy()
    flags = {f.node_id: f for f in det.inspect(2, _sketches(sk, fresh))}
    assert set(flags) == {"sneaky", "twin"}
    assert flags["sneaky"].kind is FreeRiderKind.REPLAY and flags["sneaky"].statistic > 0.0
    assert "earlier in this round" in flags["twin"].evidence and flags["twin"].statistic == 0.0


def test_policy_factors_and_screened_aggregation() -> None:
    g = Weights({"w": np.zeros(400, np.float32)})
    fed = _Federation(400, seed=9, honest=5)
    ups = fed.round()
    sk = UpdateSketcher(g.spec())
    for policy, factor in [
        (FreeRiderPolicy.FLAG, 1.0),
        (FreeRiderPolicy.DOWNWEIGHT, 0.25),
        (FreeRiderPolicy.EXCLUDE, 0.0),
    ]:
        det = FreeRiderDetector(FreeRiderSettings(policy=policy, downweight_factor=0.25))
        agg = ScreenedAggregator(g, 1, lambda w: FedAvg().aggregator(w, 1), det, sk)
        for n, v in ups.items():
            agg.add(Update(n, 100, Weights({"w": v})))
        flagged = {f.node_id for f in agg.screen()}
        assert flagged == {"copier", "noisy"}  # no replay possible in the first round
        assert agg.factors() == {"copier": factor, "noisy": factor}
        weights = {n: 100 * (factor if n in flagged else 1.0) for n in ups}
        kept = [n for n in ups if weights[n] > 0]
        expected = np.average(
            [ups[n].astype(np.float64) for n in kept], axis=0, weights=[weights[n] for n in kept]
        )
        np.testing.assert_allclose(agg.result()["w"], expected, rtol=1e-5, atol=1e-6)
        assert agg.inner().count() == len(kept)
        with pytest.raises(JobError, match="already screened"):
            agg.add(Update("late", 1, Weights({"w": ups["h0"]})))


def test_screening_that_excludes_everyone_fails_clearly() -> None:
    g = Weights({"w": np.zeros(10, np.float32)})
    det = FreeRiderDetector(FreeRiderSettings(policy=FreeRiderPolicy.EXCLUDE))
    agg = ScreenedAggregator(
        g, 1, lambda w: FedAvg().aggregator(w, 1), det, UpdateSketcher(g.spec())
    )
    agg.add(Update("a", 5, g))
    with pytest.raises(TooFewUpdates, match="excluded as free riders"):
        agg.result()


def test_history_is_bounded_and_rounds_must_move_forward() -> None:
    sk = UpdateSketcher(Weights({"w": np.zeros(100, np.float32)}).spec())
    det = FreeRiderDetector(FreeRiderSettings(max_fingerprints=7, history_rounds=100))
    rng = np.random.default_rng(3)
    for r in range(1, 6):
        ups = {f"n{i}": rng.normal(size=100).astype(np.float32) for i in range(3)}
        det.inspect(r, _sketches(sk, ups))
    assert det.fingerprints == 7
    with pytest.raises(JobError, match="in order"):
        det.inspect(5, {})
    short = FreeRiderDetector(FreeRiderSettings(history_rounds=2))
    for r in range(1, 6):
        short.inspect(r, _sketches(sk, {"a": rng.normal(size=100).astype(np.float32)}))
    assert short.fingerprints == 2  # rounds 4 and 5 only


def test_no_noise_flags_in_a_round_without_a_shared_direction() -> None:
    # late in training honest updates are SGD noise themselves: nothing can be told apart
    rng = np.random.default_rng(11)
    sk = UpdateSketcher(Weights({"w": np.zeros(600, np.float32)}).spec())
    ups = {f"h{i}": rng.normal(size=600).astype(np.float32) for i in range(6)}
    ups["noisy"] = rng.normal(size=600).astype(np.float32)
    assert FreeRiderDetector().inspect(1, _sketches(sk, ups)) == ()
    # the same noise node is caught once the honest updates share a direction
    common = rng.normal(size=600)
    ups2 = {f"h{i}": (common + 0.5 * rng.normal(size=600)).astype(np.float32) for i in range(6)}
    ups2["noisy"] = rng.normal(size=600).astype(np.float32)
    flags = FreeRiderDetector().inspect(1, _sketches(sk, ups2))
    assert [(f.node_id, f.kind) for f in flags] == [("noisy", FreeRiderKind.NOISE)]
    assert "others agree" in flags[0].evidence


def test_settings_from_a_job_file_with_specific_errors() -> None:
    s = FreeRiderSettings.from_job({"policy": "downweight", "downweight_factor": 0.2})
    assert s.policy is FreeRiderPolicy.DOWNWEIGHT and s.downweight_factor == 0.2
    with pytest.raises(ConfigError, match=r"policy: .*'drop'; bogus: unknown setting"):
        FreeRiderSettings.from_job({"policy": "drop", "bogus": 1})
    with pytest.raises(ConfigError, match="downweight_factor: input should be less than 1"):
        FreeRiderSettings.from_job({"downweight_factor": 1.5})
