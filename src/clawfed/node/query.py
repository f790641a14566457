"""A node's answer to a federated QUERY task: prediction error per group, aggregates only.

The coordinator sends the job's current model and a query config (keys below). The node
predicts every row of its own data in the period, groups the rows by one column and
returns, per group asked for, sums that a coordinator can merge (count, error sums, sums
of actual and predicted values) — never a row. A group with fewer than
``query.min_group_rows`` rows is suppressed here: its sums are sent as zeros and only
its ``suppressed`` flag is set, so the coordinator can say that it was held back.

Config keys (``wire.query.QueryKey``)::

    query.group_column     str    column to group by (e.g. region)
    query.groups           str    JSON list of the group values asked for, in answer order
    query.period_column    str    column holding each row's date or month (YYYY-MM)
    query.start            str    first day of the period (ISO date)
    query.end              str    last day of the period (ISO date)
    query.min_group_rows   int    k: smallest group whose aggregates may leave the node
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd

from clawfed.aggregation import ConfigValue
from clawfed.core import ConfigError, DataError, Weights
from clawfed.node.task_setup import parse_task_config
from clawfed.wire.query import ANSWER_TENSORS, MAX_GROUPS, QueryKey

GROUP_COLUMN = QueryKey.GROUP_COLUMN.value
GROUPS = QueryKey.GROUPS.value
PERIOD_COLUMN = QueryKey.PERIOD_COLUMN.value
START = QueryKey.START.value
END = QueryKey.END.value
MIN_GROUP_ROWS = QueryKey.MIN_GROUP_ROWS.value


@dataclass(frozen=True)
class QuerySpec:
    """A query config read back: what to group by, which groups, which period, which k."""

    group_column: str
    groups: tuple[str, ...]
    period_column: str
    start: date
    end: date
    min_group_rows: int


@dataclass(frozen=True)
class QueryAnswer:
    """What leaves the node: rows counted in shown groups, and the aggregate tensors."""

    num_samples: int
    aggregates: Weights


@runtime_checkable
class QueryRunner(Protocol):
    """A runner that can answer QUERY tasks."""

    def query(self, config: Mapping[str, ConfigValue], weights: Weights) -> QueryAnswer:
        """Answer one query with the job's model ``weights``."""
        ...


def _text(config: Mapping[str, ConfigValue], key: str) -> str:
    value = config.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"query config {key!r} must be a non-empty string, got {value!r}")
    return value.strip()


def _day(config: Mapping[str, ConfigValue], key: str) -> date:
    text = _text(config, key)
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise ConfigError(f"query config {key!r} must be an ISO date, got {text!r}") from exc


def parse_query(config: Mapping[str, ConfigValue]) -> QuerySpec:
    """Read the ``query.*`` keys of a task config.

    Raises
    ------
    ConfigError
        Naming the key that is missing or malformed.
    """
    try:
        groups = json.loads(_text(config, GROUPS))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"query config {GROUPS!r} is not valid JSON: {exc}") from exc
    if (
        not isinstance(groups, list)
        or not groups
        or not all(isinstance(g, str) and g for g in groups)
    ):
        raise ConfigError(f"query config {GROUPS!r} must be a non-empty JSON list of names")
    if len(groups) > MAX_GROUPS or len(set(groups)) != len(groups):
        raise ConfigError(
            f"query config {GROUPS!r} must list at most {MAX_GROUPS} distinct groups, "
            f"got {len(groups)}"
        )
    k = config.get(MIN_GROUP_ROWS)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"query config {MIN_GROUP_ROWS!r} must be an integer >= 1, got {k!r}")
    start, end = _day(config, START), _day(config, END)
    if end < start:
        raise ConfigError(f"query period ends ({end}) before it starts ({start})")
    return QuerySpec(
        _text(config, GROUP_COLUMN),
        tuple(groups),
        _text(config, PERIOD_COLUMN),
        start,
        end,
        k,
    )


def _in_period(values: pd.Series, spec: QuerySpec) -> np.ndarray:
    """Rows whose date (or first day of their ``YYYY-MM`` month) lies in the period."""
    try:
        days = pd.to_datetime(values.astype(str), format="mixed", errors="raise")
    except (ValueError, TypeError) as exc:
        raise DataError(
            f"query: column {spec.period_column!r} must hold dates or YYYY-MM months "
            f"({type(exc).__name__})"
        ) from None
    start, end = pd.Timestamp(spec.start), pd.Timestamp(spec.end)
    mask: np.ndarray = ((days >= start) & (days <= end)).to_numpy(dtype=bool)
    return mask


def group_aggregates(
    groups: pd.Series,
    in_period: np.ndarray,
    predicted: np.ndarray,
    actual: np.ndarray,
    spec: QuerySpec,
) -> QueryAnswer:
    """The answer tensors for ``spec.groups``: sums for groups of at least k rows, else zeros.

    Parameters
    ----------
    groups
        Each row's group value.
    in_period
        Boolean mask of the rows in the period.
    predicted, actual
        The model's value and the true value of each row.
    spec
        The query.
    """
    n = len(spec.groups)
    out = {name: np.zeros(n, dtype=np.float64) for name in ANSWER_TENSORS}
    keys = groups.astype(str).str.strip().to_numpy()
    shown = 0
    for i, group in enumerate(spec.groups):
        rows = in_period & (keys == group)
        count = int(rows.sum())
        if count == 0:
            continue
        if count < spec.min_group_rows:
            out["suppressed"][i] = 1.0
            continue
        err = predicted[rows] - actual[rows]
        out["count"][i] = float(count)
        out["sum_error"][i] = float(err.sum())
        out["sum_abs_error"][i] = float(np.abs(err).sum())
        out["sum_sq_error"][i] = float((err**2).sum())
        out["sum_actual"][i] = float(actual[rows].sum())
        out["sum_predicted"][i] = float(predicted[rows].sum())
        shown += count
    return QueryAnswer(shown, Weights((name, out[name]) for name in ANSWER_TENSORS))


class RegressionQuery:
    """Answers prediction-error queries for the regression jobs of a ``RegressionRunner``.

    Parameters
    ----------
    runner
        The node's regression runner (it loads and encodes the rows like training does).
    """

    def __init__(self, runner: object) -> None:
        from clawfed.node.regression_runner import RegressionRunner

        if not isinstance(runner, RegressionRunner):
            raise ConfigError(f"a query needs a RegressionRunner, got {type(runner).__name__}")
        self._runner = runner

    def query(self, config: Mapping[str, ConfigValue], weights: Weights) -> QueryAnswer:
        """Predict every row in the period with ``weights`` and aggregate the error per group."""
        spec = parse_query(config)
        setup = parse_task_config(config)
        rows = self._runner.all_rows(setup)
        for column in (spec.group_column, spec.period_column):
            if column not in rows.frame.columns:
                raise DataError(
                    f"dataset {setup.data.dataset!r} has no column {column!r} to query by"
                )
        trainer = self._runner.trainer(setup, rows.features.shape[1], weights)
        predicted = trainer.predict(rows.features)
        actual = np.asarray(rows.targets, dtype=np.float64)
        mask = _in_period(rows.frame[spec.period_column], spec)
        return group_aggregates(rows.frame[spec.group_column], mask, predicted, actual, spec)


def run_query(runner: object, config: Mapping[str, ConfigValue], weights: Weights) -> QueryAnswer:
    """Answer a QUERY task with ``runner`` if it can answer queries.

    Raises
    ------
    ConfigError
        When the node's runner answers no federated queries.
    """
    if not isinstance(runner, QueryRunner):
        raise ConfigError(
            f"this node's runner ({type(runner).__name__}) answers no federated queries"
        )
    return runner.query(config, weights)
