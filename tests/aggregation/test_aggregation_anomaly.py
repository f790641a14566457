"""Update sketches (exact and count sketch, error bounds) and anomaly attribution."""

from __future__ import annotations

import math

import numpy as np
import pytest

from clawfed.aggregation.anomaly import (
    MAX_SKETCH_DIM,
    AnomalySettings,
    UpdateAction,
    UpdateSketcher,
    attribute_anomaly,
    cosine_error_bound,
    inner_error_bound,
    node_deviations,
    robust_reference,
)
from clawfed.core import ConfigError, UpdateRejected, Weights


def _model(*shapes: tuple[int, ...]) -> Weights:
    return Weights({f"t{i}": np.zeros(s, np.float32) for i, s in enumerate(shapes)})


def _like(model: Weights, flat: np.ndarray) -> Weights:
    out, pos = [], 0
    for name, a in model.items():
        out.append((name, flat[pos : pos + a.size].reshape(a.shape).astype(np.float32)))
        pos += a.size
    return Weights(out)


def test_small_model_is_sketched_exactly() -> None:
    model = _model((3, 4), (5,))
    sk = UpdateSketcher(model.spec(), dim=64)
    assert sk.exact and sk.dim == 17
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=17), rng.normal(size=17)
    sa, sb = sk.sketch(_like(model, a)), sk.sketch(_like(model, b))
    a32, b32 = a.astype(np.float32).astype(np.float64), b.astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(sa.vector, a32)
    exact_cos = float(a32 @ b32 / np.linalg.norm(a32) / np.linalg.norm(b32))
    assert sa.cosine(sb) == pytest.approx(exact_cos, abs=1e-12)
    assert sa.norm == pytest.approx(float(np.linalg.norm(a32)))
    assert sa.distance(sb) == pytest.approx(float(np.linalg.norm(a32 - b32)))


def test_count_sketch_is_linear_seeded_and_keeps_exact_norm() -> None:
    model = _model((300, 50), (1000,))
    sk = UpdateSketcher(model.spec(), dim=512, seed=7)
    assert not sk.exact and sk.dim == 512
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=16000), rng.normal(size=16000)
    sa, sb = sk.sketch(_like(model, a)), sk.sketch(_like(model, b))
    sab = sk.sketch(_like(model, a.astype(np.float32) + b.astype(np.float32)))
    np.testing.assert_allclose(sab.vector, sa.vector + sb.vector, rtol=1e-5, atol=1e-4)
    assert sa.norm == pytest.approx(float(np.linalg.norm(a.astype(np.float32).astype(float))))
    again = UpdateSketcher(model.spec(), dim=512, seed=7).sketch(_like(model, a))
    np.testing.assert_array_equal(again.vector, sa.vector)
    other_seed = UpdateSketcher(model.spec(), dim=512, seed=8).sketch(_like(model, a))
    with pytest.raises(ConfigError, match="different sketchers"):
        sa.cosine(other_seed)


def test_sketch_cosine_and_inner_errors_stay_within_the_bounds() -> None:
    d, k, trials = 8000, 1024, 200
    model = _model((d,))
    sk = UpdateSketcher(model.spec(), dim=k, seed=3)
    rng = np.random.default_rng(2)
    cos_err, inner_viol = [], 0
    t_inner = inner_error_bound(k, 0.05)
    for i in range(trials):
        base = rng.normal(size=d)
        mix = (i % 11) / 10.0  # cosines from 0 to ~1
        other = mix * base + math.sqrt(1 - mix**2) * rng.normal(size=d)
        x, y = base.astype(np.float32), other.astype(np.float32)
        sx, sy = sk.sketch(Weights({"t0": x})), sk.sketch(Weights({"t0": y}))
        x64, y64 = x.astype(np.float64), y.astype(np.float64)
        nx, ny = np.linalg.norm(x64), np.linalg.norm(y64)
        exact = float(x64 @ y64 / (nx * ny))
        cos_err.append(abs(sx.cosine(sy) - exact))
        inner_viol += abs(sx.inner(sy) - float(x64 @ y64)) > t_inner * nx * ny
    rms = math.sqrt(float(np.mean(np.square(cos_err))))
    assert rms <= math.sqrt(2.0 / k)  # the variance bound, about 0.044 at k = 1024
    assert max(cos_err) <= cosine_error_bound(k, 0.01)
    assert inner_viol <= 0.05 * trials  # Chebyshev: at most a 5 % failure rate
    assert max(cos_err) > 0.0  # it is a real sketch, not the identity


def test_sketcher_refuses_bad_dims_and_mismatched_updates() -> None:
    spec = _model((10,)).spec()
    for bad in (0, MAX_SKETCH_DIM + 1, True):
        with pytest.raises(ConfigError, match="sketch dim"):
            UpdateSketcher(spec, dim=bad)
    with pytest.raises(UpdateRejected):
        UpdateSketcher(spec).sketch(Weights({"t0": np.zeros(11, np.float32)}))
    with pytest.raises(ConfigError, match="failure_prob"):
        inner_error_bound(100, 1.5)


def _round(
    rng: np.random.Generator, n_honest: int, attacker: np.ndarray | None
) -> dict[str, np.ndarray]:
    common = np.ones(200)
    ups = {f"h{i}": common + 0.3 * rng.normal(size=200) for i in range(n_honest)}
    if attacker is not None:
        ups["bad"] = attacker
    return ups


def test_attribution_names_the_deviating_department_when_the_metric_falls() -> None:
    rng = np.random.default_rng(4)
    model = _model((200,))
    sk = UpdateSketcher(model.spec())
    ups = _round(rng, 6, -10.0 * np.ones(200))
    sketches = {n: sk.sketch(Weights({"t0": v.astype(np.float32)})) for n, v in ups.items()}
    depts = {n: f"dept-{n}" for n in ups} | {"bad": "信贷部"}
    report = attribute_anomaly(
        7,
        0.91,
        0.79,
        sketches,
        settings=AnomalySettings(metric="accuracy", threshold=0.05),
        departments=depts,
        actions={"bad": UpdateAction.DOWNWEIGHTED},
    )
    assert report.triggered and report.worsening == pytest.approx(0.12)
    assert [s.node_id for s in report.suspects] == ["bad"]
    bad = report.suspects[0]
    assert bad.cosine == pytest.approx(-1.0, abs=0.05)
    assert 8.0 < bad.norm_ratio < 11.0  # 10·‖1‖ against honest norms of about 1.04·‖1‖
    assert bad.action is UpdateAction.DOWNWEIGHTED
    assert "信贷部" in report.summary() and "downweighted" in report.summary()
    assert report.deviations[0].node_id == "bad"
    assert all(d.cosine > 0.9 for d in report.deviations[1:])


def test_no_anomaly_below_the_threshold_or_in_the_first_round() -> None:
    rng = np.random.default_rng(5)
    sk = UpdateSketcher(_model((200,)).spec())
    ups = _round(rng, 5, 10.0 * np.ones(200))
    sketches = {n: sk.sketch(Weights({"t0": v.astype(np.float32)})) for n, v in ups.items()}
    calm = attribute_anomaly(3, 0.90, 0.89, sketches, settings=AnomalySettings(threshold=0.02))
    assert not calm.triggered and calm.suspects == ()
    assert calm.deviations[0].node_id == "bad"  # deviations are computed all the same
    first = attribute_anomaly(1, None, 0.5, sketches)
    assert not first.triggered and "no anomaly" in first.summary()
    loss = attribute_anomaly(
        4, 0.30, 0.50, sketches, settings=AnomalySettings(metric="loss", higher_is_better=False)
    )
    assert loss.triggered and [s.node_id for s in loss.suspects] == ["bad"]


def test_median_reference_resists_a_large_update_that_dominates_the_mean() -> None:
    sk = UpdateSketcher(_model((3,)).spec())
    vecs = {"a": [1.0, 0, 0], "b": [1.0, 0.1, 0], "c": [1.0, -0.1, 0], "x": [-100.0, 0, 0]}
    sketches = {n: sk.sketch(Weights({"t0": np.array(v, np.float32)})) for n, v in vecs.items()}
    np.testing.assert_allclose(robust_reference(list(sketches.values())), [1.0, 0.0, 0.0])
    devs = {d.node_id: d for d in node_deviations(sketches)}
    assert devs["x"].cosine == pytest.approx(-1.0)
    assert devs["a"].cosine == pytest.approx(1.0)
    assert devs["x"].score > 2.0 + math.log(50)


def test_anomaly_settings_are_validated() -> None:
    with pytest.raises(ConfigError, match="threshold"):
        AnomalySettings(threshold=-1.0)
    with pytest.raises(ConfigError, match="max_suspects"):
        AnomalySettings(max_suspects=0)
