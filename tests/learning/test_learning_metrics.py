"""Tests of the numpy metrics against scikit-learn, and of their combination across nodes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from clawfed.core import DataError
from clawfed.learning.metrics import (
    binary_metrics,
    combine_metrics,
    log_loss,
    recall_at_fpr,
    roc_auc,
)


@st.composite
def _cases(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    n = draw(st.integers(1, 60))
    # coarse probabilities on purpose, so that ties occur often
    p = draw(st.lists(st.integers(0, 20), min_size=n, max_size=n))
    y = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
    return np.array(p, dtype=np.float64) / 20.0, np.array(y, dtype=np.int64)


@settings(max_examples=150, deadline=None)
@given(_cases(), st.sampled_from([0.3, 0.5, 0.71]))
def test_binary_metrics_match_sklearn(case: tuple[np.ndarray, np.ndarray], t: float) -> None:
    p, y = case
    report = binary_metrics(p, y, t)
    m = report.values
    pred = (p >= t).astype(np.int64)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred), abs=1e-12)
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, p, labels=[0, 1]), rel=1e-9)
    if pred.sum() > 0:
        assert m["precision"] == pytest.approx(skm.precision_score(y, pred), abs=1e-12)
    else:
        assert "precision" not in m
    if y.sum() > 0:
        assert m["recall"] == pytest.approx(skm.recall_score(y, pred), abs=1e-12)
        assert m["f1"] == pytest.approx(skm.f1_score(y, pred), abs=1e-12)
    else:
        assert "recall" not in m
    if 0 < y.sum() < y.size:
        assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p), abs=1e-12)
        assert roc_auc(p, y) == pytest.approx(skm.roc_auc_score(y, p), abs=1e-12)
        assert m["recall_at_1pct_fpr"] == _brute_recall_at_fpr(p, y, 0.01)
    else:
        assert "roc_auc" not in m
        assert "recall_at_1pct_fpr" not in m
        assert roc_auc(p, y) is None
    assert all(np.isfinite(v) for v in m.values())
    assert len(report.notes) == 7 - len(m)


def test_log_loss_function_matches_sklearn_at_the_extremes() -> None:
    p = np.array([0.0, 1.0, 1e-20, 0.5])
    y = np.array([1, 0, 1, 1])
    assert log_loss(p, y) == pytest.approx(skm.log_loss(y, p), rel=1e-9)


@pytest.mark.parametrize("cls", [0, 1])
def test_single_class_omits_auc_and_says_so(cls: int) -> None:
    p = np.array([0.2, 0.9, 0.6])
    report = binary_metrics(p, np.full(3, cls))
    assert "roc_auc" not in report.values
    notes = [n for n in report.notes if n.startswith("roc_auc omitted")]
    assert notes == [
        f"roc_auc omitted: undefined when the labels hold one class only "
        f"(all 3 examples are class {cls})"
    ]
    assert report.values["accuracy"] == pytest.approx(2 / 3 if cls == 1 else 1 / 3)


def _brute_recall_at_fpr(p: np.ndarray, y: np.ndarray, max_fpr: float) -> float:
    """Try every threshold (each distinct score, and one above them all) one by one."""
    n_pos = int(y.sum())
    n_neg = int(y.size) - n_pos
    best = 0.0
    for t in [*sorted(set(p.tolist())), np.inf]:
        pred = p >= t
        fp = int(np.count_nonzero(pred & (y == 0)))
        tp = int(np.count_nonzero(pred & (y == 1)))
        if fp / n_neg <= max_fpr:
            best = max(best, tp / n_pos)
    return best


_BUDGETS = st.one_of(st.sampled_from([0.0, 0.01, 0.05, 0.1, 0.25, 1.0]), st.floats(0.0, 1.0))


@settings(max_examples=300, deadline=None)
@given(_cases(), _BUDGETS)
def test_recall_at_fpr_matches_brute_force(
    case: tuple[np.ndarray, np.ndarray], max_fpr: float
) -> None:
    p, y = case
    got = recall_at_fpr(p, y, max_fpr)
    if y.sum() in (0, y.size):
        assert got is None
        return
    assert got == _brute_recall_at_fpr(p, y, max_fpr)
    # and against scikit-learn's ROC curve, every threshold kept
    fpr, tpr, _ = skm.roc_curve(y, p, drop_intermediate=False)
    assert got == pytest.approx(float(tpr[fpr <= max_fpr].max()), abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(_cases(), st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_recall_at_fpr_grows_with_the_budget(
    case: tuple[np.ndarray, np.ndarray], a: float, b: float
) -> None:
    p, y = case
    lo, hi = recall_at_fpr(p, y, min(a, b)), recall_at_fpr(p, y, max(a, b))
    if lo is None or hi is None:
        assert lo is None and hi is None
    else:
        assert 0.0 <= lo <= hi <= 1.0
        assert recall_at_fpr(p, y, 1.0) == 1.0


def test_recall_at_fpr_admits_or_refuses_tied_scores_together() -> None:
    # 10 positives: 5 score 0.9, 3 score 0.8, 2 score 0.05; 200 negatives: 2 score 0.8,
    # 198 score 0.1. The positives come first, so a stable sort puts them ahead of the tie.
    p = np.array([0.9] * 5 + [0.8] * 3 + [0.05] * 2 + [0.8] * 2 + [0.1] * 198)
    y = np.array([1] * 10 + [0] * 200)
    # threshold 0.8: FPR 2/200 = 1 %, so the 3 positives tied with the 2 negatives count
    assert recall_at_fpr(p, y, 0.01) == 0.8
    assert binary_metrics(p, y).values["recall_at_1pct_fpr"] == 0.8
    # just under 1 %: the tie at 0.8 must go whole, leaving threshold 0.9
    assert recall_at_fpr(p, y, 0.0099) == 0.5
    assert recall_at_fpr(p, y, 0.0) == 0.5
    # a third negative at 0.8 pushes that tie over 1 % too
    p3 = np.where(np.arange(p.size) == p.size - 1, 0.8, p)
    assert recall_at_fpr(p3, y, 0.01) == 0.5
    # when even the top score is a negative, only "nothing positive" fits a zero budget
    top_negative = np.array([0.95, 0.9, 0.2])
    assert recall_at_fpr(top_negative, np.array([0, 1, 0]), 0.0) == 0.0
    assert recall_at_fpr(top_negative, np.array([0, 1, 0]), 0.5) == 1.0


@pytest.mark.parametrize("cls", [0, 1])
def test_recall_at_fpr_is_none_with_one_class(cls: int) -> None:
    p = np.array([0.2, 0.9, 0.6])
    assert recall_at_fpr(p, np.full(3, cls)) is None
    report = binary_metrics(p, np.full(3, cls))
    assert "recall_at_1pct_fpr" not in report.values
    assert (
        f"recall_at_1pct_fpr omitted: undefined when the labels hold one class only "
        f"(all 3 examples are class {cls})"
    ) in report.notes


@pytest.mark.parametrize(
    ("max_fpr", "message"),
    [
        (-0.1, r"max_fpr must be in \[0, 1\], got -0.1"),
        (1.5, r"max_fpr must be in \[0, 1\], got 1.5"),
        (float("nan"), r"max_fpr must be in \[0, 1\], got nan"),
        (True, r"max_fpr must be a number in \[0, 1\], got True"),
        ("0.01", r"max_fpr must be a number in \[0, 1\], got '0.01'"),
    ],
)
def test_recall_at_fpr_refuses_a_bad_budget(max_fpr: object, message: str) -> None:
    with pytest.raises(DataError, match=message):
        recall_at_fpr([0.2, 0.7], [0, 1], max_fpr)  # type: ignore[arg-type]


def test_recall_at_fpr_checks_its_inputs() -> None:
    with pytest.raises(DataError, match="got 2 probabilities but 1 labels"):
        recall_at_fpr([0.2, 0.7], [1])


@pytest.mark.parametrize(
    ("p", "y", "message"),
    [
        ([], [], "at least one example"),
        ([0.5, 0.5], [1], "2 probabilities but 1 labels"),
        ([[0.5]], [1], "probabilities must be 1-D"),
        ([1.5], [1], r"finite and in \[0, 1\]"),
        ([np.nan], [1], r"finite and in \[0, 1\]"),
        ([0.5], [2], r"labels must be 0 or 1, got \[2\]"),
        ([0.5], [0.5], "labels must be integers"),
    ],
)
def test_metrics_refuse_bad_input(p: list[float], y: list[float], message: str) -> None:
    with pytest.raises(DataError, match=message):
        binary_metrics(p, y)


def test_threshold_is_checked() -> None:
    with pytest.raises(DataError, match=r"threshold must be in \(0, 1\), got 0"):
        binary_metrics([0.5], [1], threshold=0)


def test_combine_metrics_is_sample_weighted_over_reporting_nodes() -> None:
    combined = combine_metrics(
        {
            "credit": (100, {"accuracy": 0.9, "roc_auc": 0.8}),
            "audit": (300, {"accuracy": 0.5}),  # one class only: no AUC
            "legal": (100, {"accuracy": 0.7, "roc_auc": 0.6}),
        }
    )
    assert combined["accuracy"] == pytest.approx((90 + 150 + 70) / 500)
    assert combined["roc_auc"] == pytest.approx((80 + 60) / 200)
    assert set(combined) == {"accuracy", "roc_auc"}


@pytest.mark.parametrize(
    ("per_node", "message"),
    [
        ({}, "at least one node"),
        ({"a": (0, {"x": 1.0})}, "node 'a': num_samples must be an integer > 0, got 0"),
        ({"a": (True, {"x": 1.0})}, "got True"),
        ({"a": (3, {"x": float("inf")})}, "node 'a': metric 'x' must be finite"),
    ],
)
def test_combine_metrics_refuses_bad_input(
    per_node: dict[str, tuple[int, dict[str, float]]], message: str
) -> None:
    with pytest.raises(DataError, match=message):
        combine_metrics(per_node)
