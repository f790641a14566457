"""Federated queries: each node measures the job's current model on its own rows, per group.

The coordinator sends the current version's weights and a query config (a QUERY task) to
the job's nodes; each answers with per-group sums (count, error sums, sums of actual and
predicted values) for the groups of at least ``min_group_rows`` rows, and only a flag for
the smaller ones. The coordinator checks each answer, enforces the minimum group size
again (a node that reports a smaller group is not believed), and merges the sums by
department and by group. No row ever leaves a node.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from clawfed.coordinator.gateway import NodeGateway, TaskKind, TaskOutcome, TaskRequest
from clawfed.coordinator.jobspec import JobSpec, parse_job
from clawfed.coordinator.ledger import SqlLedger
from clawfed.coordinator.model_spec import REGRESSION_MODELS
from clawfed.coordinator.phases import ask_all
from clawfed.coordinator.task_config import task_config
from clawfed.core import ConfigError, JobError, NotFoundError, Weights
from clawfed.governance.db import Database
from clawfed.governance.jobs import JobStore
from clawfed.governance.registry import ModelRegistry
from clawfed.wire.query import ANSWER_TENSORS, MAX_GROUPS, SUM_TENSORS, QueryKey

if TYPE_CHECKING:
    from clawfed.coordinator.server import Coordinator

#: The default smallest group whose aggregates leave a node (k-anonymity style threshold).
DEFAULT_MIN_GROUP_ROWS = 10


@dataclass(frozen=True)
class ErrorQuery:
    """Prediction error of a job's current model per group, over a period.

    Parameters
    ----------
    job_id
        The job whose current version is measured (a regression job).
    groups
        The values of ``group_column`` to report (e.g. ``("华东", "华南")``).
    start, end
        The period, both days included, matched against ``period_column``.
    min_group_rows
        k: a department's group of fewer rows is suppressed (at the node, and again here).
    """

    job_id: str
    groups: tuple[str, ...]
    start: date
    end: date
    group_column: str = "region"
    period_column: str = "month"
    min_group_rows: int = DEFAULT_MIN_GROUP_ROWS
    deadline_s: float = 60.0

    def __post_init__(self) -> None:
        groups = tuple(self.groups)
        object.__setattr__(self, "groups", groups)
        if not groups or len(groups) > MAX_GROUPS:
            raise ConfigError(f"a query names 1..{MAX_GROUPS} groups, got {len(groups)}")
        if len(set(groups)) != len(groups) or not all(g.strip() for g in groups):
            raise ConfigError(f"query groups must be distinct non-empty names, got {groups!r}")
        k = self.min_group_rows
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConfigError(f"min_group_rows must be an integer >= 1, got {k!r}")
        if self.end < self.start:
            raise ConfigError(f"query period ends ({self.end}) before it starts ({self.start})")
        if not (math.isfinite(self.deadline_s) and self.deadline_s > 0):
            raise ConfigError(f"deadline_s must be > 0 s, got {self.deadline_s}")
        for name in ("job_id", "group_column", "period_column"):
            if not str(getattr(self, name)).strip():
                raise ConfigError(f"query {name} must not be empty")

    def config(self) -> dict[str, str | int]:
        """The ``query.*`` keys of the QUERY task."""
        return {
            QueryKey.GROUP_COLUMN.value: self.group_column,
            QueryKey.GROUPS.value: json.dumps(list(self.groups), ensure_ascii=False),
            QueryKey.PERIOD_COLUMN.value: self.period_column,
            QueryKey.START.value: self.start.isoformat(),
            QueryKey.END.value: self.end.isoformat(),
            QueryKey.MIN_GROUP_ROWS.value: self.min_group_rows,
        }


@dataclass(frozen=True)
class GroupError:
    """The model's error on one group's rows (of one department, or of all shown together).

    ``bias`` is the mean of predicted − actual (> 0: the model over-forecasts);
    ``bias_pct`` is ``bias`` relative to the mean actual value.
    """

    group: str
    department: str | None  # None: all departments' shown rows together
    rows: int
    mae: float
    rmse: float
    bias: float
    mean_actual: float
    mean_predicted: float

    @property
    def bias_pct(self) -> float | None:
        """Bias as a share of the mean actual value (None when that is 0)."""
        return None if self.mean_actual == 0 else self.bias / abs(self.mean_actual)


@dataclass(frozen=True)
class Suppressed:
    """A department's group held back because it has fewer than k rows (1 ≤ rows < k)."""

    group: str
    department: str


@dataclass(frozen=True)
class QueryResult:
    """A merged answer: per department and group, per group overall, and what was held back."""

    query: ErrorQuery
    version_id: str
    cells: tuple[GroupError, ...]
    totals: tuple[GroupError, ...]
    suppressed: tuple[Suppressed, ...]
    missing: Mapping[str, str]  # department -> why it did not answer

    @property
    def departments(self) -> tuple[str, ...]:
        """Departments whose rows the answer shows or suppressed, sorted."""
        shown = {c.department for c in self.cells if c.department is not None}
        return tuple(sorted(shown | {s.department for s in self.suppressed}))


@dataclass(frozen=True)
class CurrentModel:
    """What a query runs: the job, its current version's id and weights, its standardizer."""

    spec: JobSpec
    version_id: str
    weights: Weights
    standardizer: Mapping[str, list[float]] | None


def stored_model(db: Database, artifacts_root: Path) -> Callable[[str], CurrentModel]:
    """A loader of each job's current version from the store and artifact folder."""
    jobs, registry, ledger = JobStore(db), ModelRegistry(db), SqlLedger(db, artifacts_root)

    def load(job_id: str) -> CurrentModel:
        record = jobs.get(job_id)
        spec = parse_job(record.spec_yaml, source=f"stored job {job_id}")
        try:
            latest = registry.latest(job_id)
        except NotFoundError:
            raise JobError(f"job {job_id} has no model version yet; train a round first") from None
        progress = ledger.progress(job_id)
        if progress.weights is None:
            raise JobError(f"job {job_id}: the weights of {latest.version_id} are missing")
        raw = progress.prep.get("standardizer")
        return CurrentModel(spec, latest.version_id, progress.weights, raw)

    return load


def _sums(node_id: str, outcome: TaskOutcome, n: int) -> dict[str, np.ndarray]:
    w = outcome.weights
    if w is None:
        raise JobError(f"node {node_id} answered the query without aggregates")
    if sorted(w.keys()) != sorted(ANSWER_TENSORS):
        raise JobError(f"node {node_id}: query answer must hold {ANSWER_TENSORS}, got {list(w)}")
    out: dict[str, np.ndarray] = {}
    for name in ANSWER_TENSORS:
        a = np.asarray(w[name], dtype=np.float64)
        if a.shape != (n,) or not bool(np.isfinite(a).all()):
            raise JobError(f"node {node_id}: {name} must be {n} finite values, got {a.shape}")
        out[name] = a
    counts, flags = out["count"], out["suppressed"]
    if bool((counts < 0).any()) or not bool((counts == np.round(counts)).all()):
        raise JobError(f"node {node_id}: group counts must be whole numbers >= 0")
    if not bool(np.isin(flags, (0.0, 1.0)).all()):
        raise JobError(f"node {node_id}: suppressed flags must be 0 or 1")
    return out


def _error(group: str, dept: str | None, sums: Mapping[str, float], rows: int) -> GroupError:
    return GroupError(
        group,
        dept,
        rows,
        mae=sums["sum_abs_error"] / rows,
        rmse=math.sqrt(max(sums["sum_sq_error"], 0.0) / rows),
        bias=sums["sum_error"] / rows,
        mean_actual=sums["sum_actual"] / rows,
        mean_predicted=sums["sum_predicted"] / rows,
    )


def merge_answers(
    query: ErrorQuery,
    version_id: str,
    answers: Mapping[str, tuple[str, TaskOutcome]],
    missing: Mapping[str, str],
) -> QueryResult:
    """Merge the nodes' answers (node id -> (department, outcome)) into a ``QueryResult``.

    Sums are added per department (a department may run several nodes), then each
    department's group is shown only if it holds at least ``query.min_group_rows`` rows;
    totals per group add the shown cells only.
    """
    n = len(query.groups)
    by_dept: dict[str, dict[str, np.ndarray]] = {}
    flagged: dict[str, np.ndarray] = {}
    for node_id, (dept, outcome) in sorted(answers.items()):
        answer = _sums(node_id, outcome, n)
        acc = by_dept.setdefault(dept, {k: np.zeros(n) for k in ("count", *SUM_TENSORS)})
        for k in ("count", *SUM_TENSORS):
            acc[k] += answer[k]
        flagged[dept] = np.maximum(flagged.get(dept, np.zeros(n)), answer["suppressed"])
    cells: list[GroupError] = []
    held: list[Suppressed] = []
    total: dict[str, dict[str, float]] = {}
    total_rows: dict[str, int] = {}
    least = query.min_group_rows
    for dept in sorted(by_dept):
        acc = by_dept[dept]
        for i, group in enumerate(query.groups):
            rows = int(acc["count"][i])
            if rows < least:  # enforce k here too: a node's small group is never shown
                if rows > 0 or flagged[dept][i] > 0:
                    held.append(Suppressed(group, dept))
                continue
            sums = {s: float(acc[s][i]) for s in SUM_TENSORS}
            cells.append(_error(group, dept, sums, rows))
            bucket = total.setdefault(group, dict.fromkeys(SUM_TENSORS, 0.0))
            for s in SUM_TENSORS:
                bucket[s] += sums[s]
            total_rows[group] = total_rows.get(group, 0) + rows
    totals = tuple(
        _error(g, None, total[g], total_rows[g]) for g in query.groups if g in total_rows
    )
    return QueryResult(query, version_id, tuple(cells), totals, tuple(held), dict(missing))


class FederatedQuery:
    """Runs ``ErrorQuery``s over the live nodes of a coordinator.

    Parameters
    ----------
    gateway
        How to reach the nodes (the coordinator's session hub, or a memory gateway in tests).
    current
        Loads a job's current model (see :func:`stored_model`).
    """

    def __init__(self, gateway: NodeGateway, current: Callable[[str], CurrentModel]) -> None:
        self._gw = gateway
        self._current = current

    async def run(self, query: ErrorQuery) -> QueryResult:
        """Send the QUERY task to the job's live nodes and merge what they answer in time.

        Raises
        ------
        JobError
            When the job is no regression job, has no version yet, or no node answered.
        """
        model = self._current(query.job_id)
        spec = model.spec
        if spec.model.name not in REGRESSION_MODELS:
            raise JobError(
                f"job {query.job_id} trains {spec.model.label}; a prediction-error query needs "
                f"a regression model ({', '.join(REGRESSION_MODELS)})"
            )
        wanted = set(spec.participants) if spec.participants else None
        nodes = [n for n in self._gw.live_nodes() if wanted is None or n.node_id in wanted]
        if not nodes:
            raise JobError(f"no node of job {query.job_id} is connected; cannot ask them")
        base = task_config(spec, standardizer=model.standardizer)
        config = {**base, **query.config()}

        def make(_node: object) -> TaskRequest:
            return TaskRequest(
                task_id=uuid.uuid4().hex,
                job_id=query.job_id,
                round_no=0,
                kind=TaskKind.QUERY,
                deadline_unix=time.time() + query.deadline_s,
                config=config,
                expected=None,
            )

        outbound = self._gw.prepare(model.weights)
        answers = await ask_all(self._gw, nodes, make, outbound, query.deadline_s)
        depts = {n.node_id: n.department for n in nodes}
        missing = {depts[nid]: why for nid, why in answers.failures.items()}
        if not answers.outcomes:
            raise JobError(f"no node answered the query on job {query.job_id}: {missing}")
        got = {nid: (depts[nid], o) for nid, o in answers.outcomes.items()}
        return merge_answers(query, model.version_id, got, missing)

    def blocking(
        self, loop: asyncio.AbstractEventLoop, timeout_s: float = 120.0
    ) -> Callable[[ErrorQuery], QueryResult]:
        """A function that runs a query on ``loop`` from another thread and waits for it."""

        def ask(query: ErrorQuery) -> QueryResult:
            future = asyncio.run_coroutine_threadsafe(self.run(query), loop)
            try:
                return future.result(timeout_s)
            except TimeoutError:
                future.cancel()
                raise JobError(
                    f"the query on job {query.job_id} took over {timeout_s:g} s"
                ) from None

        return ask


def departments_of(result: QueryResult) -> Sequence[str]:
    """Every department an answer touched (shown, suppressed or missing)."""
    return sorted(set(result.departments) | set(result.missing))


def attach_to_chat(coordinator: Coordinator) -> FederatedQuery | None:
    """Let the coordinator's chat answer regional questions with federated queries.

    Call it on the coordinator's event loop once ``Coordinator.start`` ran; does nothing
    (returns None) when the coordinator has no chat.
    """
    if coordinator.chat is None:
        return None
    runner = FederatedQuery(coordinator.hub, stored_model(coordinator.db, coordinator.ws.artifacts))
    coordinator.chat.attach_query(runner.blocking(asyncio.get_running_loop()))
    return runner
