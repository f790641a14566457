"""Binary-classification metrics from probabilities, and their sample-weighted combination."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import numpy.typing as npt

from clawfed.core import DataError, Metrics

#: Probabilities are clipped to [eps, 1 - eps] before the logarithm of the log-loss.
LOG_LOSS_EPS = float(np.finfo(np.float64).eps)
#: The false-positive-rate budget of the ``recall_at_1pct_fpr`` entry of ``binary_metrics``.
RECALL_MAX_FPR = 0.01


@dataclass(frozen=True)
class MetricReport:
    """Metrics that are defined on this data, and one note per metric left out and why."""

    values: Metrics
    notes: tuple[str, ...] = ()


def _check_inputs(
    probabilities: npt.ArrayLike, labels: npt.ArrayLike
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    p = np.asarray(probabilities, dtype=np.float64)
    y_raw = np.asarray(labels)
    if p.ndim != 1:
        raise DataError(f"probabilities must be 1-D, got shape {p.shape}")
    if y_raw.ndim != 1:
        raise DataError(f"labels must be 1-D, got shape {y_raw.shape}")
    if p.shape[0] != y_raw.shape[0]:
        raise DataError(f"got {p.shape[0]} probabilities but {y_raw.shape[0]} labels")
    if p.shape[0] == 0:
        raise DataError("metrics need at least one example, got 0")
    if not bool(np.isfinite(p).all()) or bool((p < 0.0).any()) or bool((p > 1.0).any()):
        raise DataError("probabilities must be finite and in [0, 1]")
    if y_raw.dtype.kind not in "iub":
        raise DataError(f"labels must be integers 0 or 1, got dtype {y_raw.dtype}")
    y = y_raw.astype(np.int64)
    bad = np.setdiff1d(np.unique(y), [0, 1])
    if bad.size:
        raise DataError(f"labels must be 0 or 1, got {bad.tolist()}")
    return p, y


def roc_auc(probabilities: npt.ArrayLike, labels: npt.ArrayLike) -> float | None:
    """Area under the ROC curve, or ``None`` when the labels hold a single class.

    Computed as the Mann-Whitney U statistic with tied scores counted as one half.
    """
    p, y = _check_inputs(probabilities, labels)
    n_pos = int(y.sum())
    n_neg = int(y.shape[0]) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    return _auc(p, y, n_pos, n_neg)


def _auc(p: npt.NDArray[np.float64], y: npt.NDArray[np.int64], n_pos: int, n_neg: int) -> float:
    order = np.argsort(p, kind="mergesort")
    sorted_p = p[order]
    # average 1-based ranks over runs of tied scores
    starts = np.flatnonzero(np.r_[True, sorted_p[1:] != sorted_p[:-1]])
    ends = np.r_[starts[1:], sorted_p.shape[0]]
    run_rank = (starts + 1 + ends) / 2.0
    ranks = np.empty_like(p)
    ranks[order] = np.repeat(run_rank, ends - starts)
    u = float(ranks[y == 1].sum()) - n_pos * (n_pos + 1) / 2.0
    return u / (n_pos * n_neg)


def recall_at_fpr(
    probabilities: npt.ArrayLike, labels: npt.ArrayLike, max_fpr: float = RECALL_MAX_FPR
) -> float | None:
    """Highest recall of a threshold whose false-positive rate is at most ``max_fpr``.

    A threshold ``t`` predicts positive every example with probability >= ``t``, so tied
    scores are admitted or refused together: a run of ties that would push the false-positive
    rate over ``max_fpr`` is left out whole. The threshold above every score (nothing
    predicted positive) is always allowed, so the answer is 0.0 when no other one is.

    Returns
    -------
    float or None
        The recall in [0, 1], or ``None`` when the labels hold a single class.

    Raises
    ------
    DataError
        When the inputs are empty, misshapen, out of range or not 0/1 labels, or when
        ``max_fpr`` is not a number in [0, 1].
    """
    p, y = _check_inputs(probabilities, labels)
    budget = _check_fpr(max_fpr)
    n_pos = int(y.sum())
    n_neg = int(y.shape[0]) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    return _recall_at_fpr(p, y, n_pos, n_neg, budget)


def _check_fpr(max_fpr: float) -> float:
    if isinstance(max_fpr, bool) or not isinstance(max_fpr, int | float | np.floating):
        raise DataError(f"max_fpr must be a number in [0, 1], got {max_fpr!r}")
    budget = float(max_fpr)
    if not 0.0 <= budget <= 1.0:  # also refuses NaN
        raise DataError(f"max_fpr must be in [0, 1], got {max_fpr!r}")
    return budget


def _recall_at_fpr(
    p: npt.NDArray[np.float64], y: npt.NDArray[np.int64], n_pos: int, n_neg: int, max_fpr: float
) -> float:
    order = np.argsort(-p, kind="mergesort")
    sorted_p = p[order]
    cum_pos = np.cumsum(y[order])
    cum_neg = np.arange(1, p.shape[0] + 1) - cum_pos
    # a threshold can only sit at the last example of a run of tied scores
    last_of_run = np.r_[sorted_p[1:] != sorted_p[:-1], True]
    allowed = last_of_run & (cum_neg / n_neg <= max_fpr)
    if not bool(allowed.any()):
        return 0.0
    # counts grow as the threshold falls, so the lowest allowed threshold recalls the most
    return float(cum_pos[np.flatnonzero(allowed)[-1]]) / n_pos


def log_loss(probabilities: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    """Mean binary cross-entropy of ``labels`` under ``probabilities`` (natural log)."""
    p, y = _check_inputs(probabilities, labels)
    return _log_loss(p, y)


def _log_loss(p: npt.NDArray[np.float64], y: npt.NDArray[np.int64]) -> float:
    q = np.clip(p, LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS)
    return float(-np.mean(y * np.log(q) + (1 - y) * np.log1p(-q)))


def binary_metrics(
    probabilities: npt.ArrayLike, labels: npt.ArrayLike, threshold: float = 0.5
) -> MetricReport:
    """Accuracy, precision, recall, F1, ROC-AUC, recall at 1 % FPR and log-loss.

    A row is predicted positive when its probability is >= ``threshold``. A metric whose
    denominator is zero on this data (ROC-AUC and ``recall_at_1pct_fpr`` with one class
    only, precision with no predicted positive, recall with no actual positive) is left out
    and explained in ``notes`` rather than returned as NaN. ``recall_at_1pct_fpr`` is
    ``recall_at_fpr`` with ``max_fpr`` = ``RECALL_MAX_FPR``: its own threshold, not
    ``threshold``.

    Raises
    ------
    DataError
        When the inputs are empty, misshapen, out of range or not 0/1 labels.
    """
    p, y = _check_inputs(probabilities, labels)
    if not 0.0 < threshold < 1.0:
        raise DataError(f"threshold must be in (0, 1), got {threshold}")
    pred = p >= threshold
    truth = y == 1
    tp = int(np.count_nonzero(pred & truth))
    fp = int(np.count_nonzero(pred & ~truth))
    fn = int(np.count_nonzero(~pred & truth))
    n = int(y.shape[0])
    n_pos = int(np.count_nonzero(truth))
    n_neg = n - n_pos
    values: dict[str, float] = {"accuracy": float(np.count_nonzero(pred == truth)) / n}
    notes: list[str] = []
    if tp + fp:
        values["precision"] = tp / (tp + fp)
    else:
        notes.append(f"precision omitted: no example predicted positive (threshold {threshold})")
    if n_pos:
        values["recall"] = tp / n_pos
    else:
        notes.append(f"recall omitted: no positive label among the {n} examples")
    if 2 * tp + fp + fn:
        values["f1"] = 2 * tp / (2 * tp + fp + fn)
    else:
        notes.append("f1 omitted: no positive label and no positive prediction")
    if n_pos and n_neg:
        values["roc_auc"] = _auc(p, y, n_pos, n_neg)
        values["recall_at_1pct_fpr"] = _recall_at_fpr(p, y, n_pos, n_neg, RECALL_MAX_FPR)
    else:
        only = 1 if n_pos else 0
        for name in ("roc_auc", "recall_at_1pct_fpr"):
            notes.append(
                f"{name} omitted: undefined when the labels hold one class only "
                f"(all {n} examples are class {only})"
            )
    values["log_loss"] = _log_loss(p, y)
    return MetricReport(MappingProxyType(values), tuple(notes))


def combine_metrics(per_node: Mapping[str, tuple[int, Metrics]]) -> Metrics:
    """Sample-weighted mean of every metric over the nodes that report it.

    A metric reported by only some nodes (e.g. ROC-AUC, omitted where a node holds one
    class) is averaged over those nodes, weighted by their sample counts.

    Raises
    ------
    DataError
        When ``per_node`` is empty, a sample count is not > 0 or a value is not finite.
    """
    if not per_node:
        raise DataError("combine_metrics needs at least one node's metrics, got none")
    sums: dict[str, float] = {}
    weights: dict[str, int] = {}
    for node, (count, metrics) in per_node.items():
        if isinstance(count, bool) or not isinstance(count, int | np.integer) or count <= 0:
            raise DataError(f"node {node!r}: num_samples must be an integer > 0, got {count!r}")
        for name, value in metrics.items():
            v = float(value)
            if not np.isfinite(v):
                raise DataError(f"node {node!r}: metric {name!r} must be finite, got {value!r}")
            sums[name] = sums.get(name, 0.0) + int(count) * v
            weights[name] = weights.get(name, 0) + int(count)
    return MappingProxyType({name: sums[name] / weights[name] for name in sums})
