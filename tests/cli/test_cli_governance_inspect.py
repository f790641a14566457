"""The read-side functions behind ``clawfed models``: diagnostics, influence, drops and diffs."""

from __future__ import annotations

import hashlib
import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clawfed.core import ConfigError, StoreError, Weights
from clawfed.governance import ModelVersion, Participant, StrategyInfo
from clawfed.governance.inspect import (
    ALL_DEPARTMENTS,
    ArtifactCheck,
    MetricDelta,
    check_artifact,
    diagnostic_keys,
    diagnostics_from_metrics,
    metric_deltas,
    metric_dropped,
    most_influential,
    step_shares,
    weights_diff,
    without_diagnostics,
)


def _version(
    metrics: dict[str, float], departments: dict[str, dict[str, float]] | None = None
) -> ModelVersion:
    return ModelVersion(
        version_id="job@v1", job_id="job", number=1, sha256="0" * 64,
        artifact_path=Path("x.safetensors"), parent_version_id=None, round_no=1,
        participants=(Participant("n1", "d1", 1),), strategy=StrategyInfo("fedavg", {}),
        metrics=metrics, department_metrics=departments or {},
        created_at=datetime(2026, 3, 1, tzinfo=UTC),
    )  # fmt: skip


def test_diagnostics_are_read_from_round_metrics() -> None:
    norm_key, cos_key = diagnostic_keys("dept.a")
    assert (norm_key, cos_key) == ("diag.dept.a.norm", "diag.dept.a.cosine")
    metrics = {
        "accuracy": 0.9, norm_key: 2.5, cos_key: 1.0000001, "diag.b.norm": 0.0,
        "diag.b.cosine": -0.25,
    }  # fmt: skip
    assert diagnostics_from_metrics(metrics) == {"b": (0.0, -0.25), "dept.a": (2.5, 1.0)}
    assert without_diagnostics(metrics) == {"accuracy": 0.9}
    assert diagnostics_from_metrics({"accuracy": 0.9}) == {}


@pytest.mark.parametrize(
    ("metrics", "message"),
    [
        ({"diag.a.norm": 1.0}, "incomplete for a"),
        ({"diag.a.size": 1.0}, "must be named diag.<node_id>.norm or diag.<node_id>.cosine"),
        ({"diag.a.norm": -1.0, "diag.a.cosine": 0.5}, "update norm of a must be finite and >= 0"),
        ({"diag.a.norm": 1.0, "diag.a.cosine": 1.5}, "update cosine of a must be in [-1, 1]"),
        ({"diag.a.norm": math.inf, "diag.a.cosine": 0.5}, "got inf"),
    ],
)
def test_malformed_diagnostics_are_refused(metrics: dict[str, float], message: str) -> None:
    with pytest.raises(StoreError) as err:
        diagnostics_from_metrics(metrics)
    assert message in str(err.value)


def test_the_largest_share_of_the_step_wins_not_the_largest_norm() -> None:
    # b's update is big but almost orthogonal to the step; a's is smaller and aligned
    diagnostics = {"a": (2.0, 0.95), "b": (5.0, 0.1), "c": (1.0, -1.0)}
    top = most_influential(diagnostics)
    assert (top.node_id, top.norm, top.cosine) == ("a", 2.0, 0.95)
    assert top.share == pytest.approx(2.0 * 0.95 / 3)
    # …unless the aggregation weights say b's samples dominate
    heavy = most_influential(diagnostics, weights={"a": 1, "b": 100, "c": 1})
    assert heavy.node_id == "b"
    assert heavy.share == pytest.approx(100 / 102 * 5.0 * 0.1)


def test_ties_go_to_the_first_node_id() -> None:
    assert most_influential({"z": (1.0, 1.0), "m": (1.0, 1.0)}).node_id == "m"


@pytest.mark.parametrize(
    ("diagnostics", "weights", "message"),
    [
        ({}, None, "need the diagnostics of at least one node"),
        ({"a": (1.0, 0.5)}, {"b": 1.0}, "no aggregation weight for node(s) a"),
        ({"a": (1.0, 0.5)}, {"a": 0.0}, "must be finite, >= 0 and not all 0"),
        ({"a": (1.0, 2.0)}, None, "update cosine of a must be in [-1, 1]"),
    ],
)
def test_most_influential_refuses_bad_input(
    diagnostics: dict[str, tuple[float, float]], weights: dict[str, float] | None, message: str
) -> None:
    with pytest.raises(StoreError) as err:
        most_influential(diagnostics, weights=weights)
    assert message in str(err.value)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_nodes=st.integers(1, 6),
    dim=st.integers(1, 8),
)
def test_shares_split_the_fedavg_step_exactly(seed: int, n_nodes: int, dim: int) -> None:
    rng = np.random.default_rng(seed)
    updates = rng.standard_normal((n_nodes, dim)) * rng.uniform(0.1, 10.0, (n_nodes, 1))
    samples = rng.integers(1, 1000, n_nodes).astype(float)
    w = samples / samples.sum()
    step = (w[:, None] * updates).sum(axis=0)
    step_norm = float(np.linalg.norm(step))
    if step_norm < 1e-9:
        return
    names = [f"n{i}" for i in range(n_nodes)]
    diagnostics = {
        n: (float(np.linalg.norm(u)), float(u @ step / (np.linalg.norm(u) * step_norm)))
        for n, u in zip(names, updates, strict=True)
    }
    weights = dict(zip(names, samples.tolist(), strict=True))
    shares = step_shares(diagnostics, weights=weights)
    assert sum(shares.values()) == pytest.approx(step_norm, rel=1e-6, abs=1e-9)
    projections = (updates @ step) / step_norm * w
    top = most_influential(diagnostics, weights=weights)
    assert top.share == pytest.approx(float(projections.max()), rel=1e-6, abs=1e-9)


def test_metric_dropped_picks_roc_auc_then_accuracy() -> None:
    parent = _version({"roc_auc": 0.9, "accuracy": 0.8, "diag.a.norm": 1.0, "diag.a.cosine": 1.0})
    child = _version({"roc_auc": 0.85, "accuracy": 0.9})
    drop = metric_dropped(child, parent)
    assert drop is not None
    assert (drop.metric, drop.parent_value, drop.value) == ("roc_auc", 0.9, 0.85)
    assert drop.drop == pytest.approx(0.05)
    assert metric_dropped(child, parent, "accuracy") is None  # accuracy rose
    assert metric_dropped(child, parent, threshold=0.051) is None  # not more than the threshold
    assert metric_dropped(child, parent, threshold=0.049) is not None
    only_accuracy = metric_dropped(_version({"accuracy": 0.7}), parent)
    assert only_accuracy is not None and only_accuracy.metric == "accuracy"
    assert metric_dropped(_version({"f1": 0.1}), parent) is None  # nothing comparable


@pytest.mark.parametrize(
    ("metric", "threshold", "message"),
    [
        ("log_loss", 0.0, "a metric drop is checked on one of roc_auc, accuracy"),
        ("roc_auc", -0.1, "drop threshold must be a finite number >= 0, got -0.1"),
        ("roc_auc", math.nan, "drop threshold must be a finite number >= 0, got nan"),
    ],
)
def test_metric_dropped_refuses_bad_options(metric: str, threshold: float, message: str) -> None:
    v = _version({"roc_auc": 0.5})
    with pytest.raises(ConfigError) as err:
        metric_dropped(v, v, metric, threshold)
    assert message in str(err.value)


def test_metric_deltas_cover_every_department_of_either_version() -> None:
    a = _version({"accuracy": 0.5, "diag.x.norm": 1.0}, {"d1": {"accuracy": 0.4}})
    b = _version({"accuracy": 0.75}, {"d2": {"accuracy": 0.6}})
    assert metric_deltas(a, b) == [
        MetricDelta(ALL_DEPARTMENTS, "accuracy", 0.5, 0.75),
        MetricDelta("d1", "accuracy", 0.4, None),
        MetricDelta("d2", "accuracy", None, 0.6),
    ]
    assert metric_deltas(a, b)[0].delta == 0.25
    assert metric_deltas(a, b)[1].delta is None


def test_weights_diff_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    a = Weights({"x": rng.standard_normal((3, 2)).astype(np.float32), "y": np.arange(3.0)})
    b = Weights({"x": rng.standard_normal((3, 2)).astype(np.float32), "z": np.ones(2)})
    d = weights_diff(a, b)
    assert [t.name for t in d.tensors] == ["x", "y", "z"]
    x, y, z = d.tensors
    ax, bx = a["x"].astype(np.float64), b["x"].astype(np.float64)
    assert x.diff_norm == pytest.approx(np.linalg.norm(bx - ax))
    assert x.norm_delta == pytest.approx(np.linalg.norm(bx) - np.linalg.norm(ax))
    assert (y.shape_b, y.norm_b, y.diff_norm, y.norm_delta) == (None, None, None, None)
    assert (z.shape_a, z.norm_a, z.norm_b) == (None, None, pytest.approx(math.sqrt(2)))
    assert d.norm_a == pytest.approx(math.sqrt(np.sum(ax**2) + 5.0))
    assert d.norm_b == pytest.approx(math.sqrt(np.sum(bx**2) + 2.0))
    assert d.diff_norm == pytest.approx(x.diff_norm)


def test_weights_diff_of_other_shapes_has_no_distance() -> None:
    d = weights_diff(Weights({"w": np.zeros(3)}), Weights({"w": np.ones((3, 1))}))
    assert d.tensors[0].diff_norm is None and d.diff_norm == 0.0
    assert d.tensors[0].norm_delta == pytest.approx(math.sqrt(3))


def test_check_artifact(tmp_path: Path) -> None:
    f = tmp_path / "m.safetensors"
    f.write_bytes(b"model bytes")
    digest = hashlib.sha256(b"model bytes").hexdigest()
    assert check_artifact(f, digest) is ArtifactCheck.VERIFIED
    assert check_artifact(f, digest.upper()) is ArtifactCheck.VERIFIED
    f.write_bytes(b"other bytes")
    assert check_artifact(f, digest) is ArtifactCheck.MISMATCH
    assert check_artifact(tmp_path / "gone", digest) is ArtifactCheck.MISSING
