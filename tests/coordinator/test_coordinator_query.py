"""Federated error queries: node aggregates, k enforced at node and coordinator, merging."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from clawfed.coordinator import query as coordinator_query
from clawfed.coordinator.gateway import TaskKind, TaskOutcome, TaskRequest
from clawfed.coordinator.memory_gateway import MemoryGateway
from clawfed.coordinator.model_spec import REGRESSION_MODELS
from clawfed.coordinator.query import (
    ANSWER_TENSORS,
    CurrentModel,
    ErrorQuery,
    FederatedQuery,
    QueryKey,
    merge_answers,
)
from clawfed.coordinator.task_config import task_config
from clawfed.core import ConfigError, JobError, NodeInfo, Weights
from clawfed.data.retail import RETAIL_DEPARTMENTS, make_retail_scenario
from clawfed.learning.regression import REGRESSION_MODELS as LEARNING_REGRESSION_MODELS
from clawfed.node import query as node_query
from clawfed.node.dispatch import DispatchRunner, LocalData
from clawfed.wire._proto import federation_pb2 as pb
from retail_support import retail_spec, trained_federation

OCT = (pd.Timestamp("2026-10-01").date(), pd.Timestamp("2026-10-31").date())


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, DispatchRunner], Any]:
    """Three retail departments' runners and a model trained on them for two FedAvg rounds."""
    return trained_federation(tmp_path_factory.mktemp("retail"))


def _gateway(runners: dict[str, DispatchRunner]) -> MemoryGateway:
    gw = MemoryGateway()
    for dept, runner in runners.items():

        async def behaviour(
            request: TaskRequest, weights: Weights | None, *, node: str = dept, r: Any = runner
        ) -> TaskOutcome:
            assert request.kind is TaskKind.QUERY and weights is not None
            answer = await asyncio.to_thread(r.query, request.config, weights)
            return TaskOutcome(node, answer.num_samples, MappingProxyType({}), answer.aggregates)

        gw.connect(NodeInfo(dept, RETAIL_DEPARTMENTS[dept]), behaviour)
    return gw


def _run(runners: dict[str, DispatchRunner], model: CurrentModel, q: ErrorQuery) -> Any:
    async def go() -> Any:
        return await FederatedQuery(_gateway(runners), lambda _job: model).run(q)

    return asyncio.run(go())


def test_region_query_merges_departments_and_suppresses_small_groups(federation: Any) -> None:
    runners, model = federation
    q = ErrorQuery("retail-sales", ("华东", "华南", "华北", "西南"), *OCT)
    result = _run(runners, model, q)
    cells = {(c.group, c.department): c.rows for c in result.cells}
    # last month: 市场部 records 20 rows in 华东, 6 in 华南, 9 in 华北, 12 in 西南
    assert cells[("华东", "市场部")] == 20 and cells[("西南", "市场部")] == 12
    assert cells[("西南", "销售部")] == 10  # exactly k: shown
    held = {(s.group, s.department) for s in result.suppressed}
    assert held == {("华南", "市场部"), ("华北", "市场部")}  # 6 and 9 rows: held back
    totals = {t.group: t.rows for t in result.totals}
    assert totals == {"华东": 65, "华南": 37, "华北": 45, "西南": 22}
    assert result.version_id == "retail-sales@v2"
    # the totals are the shown cells' rows pooled: their bias is the row-weighted mean
    east = [c for c in result.cells if c.group == "华东"]
    pooled = sum(c.bias * c.rows for c in east) / sum(c.rows for c in east)
    assert next(t for t in result.totals if t.group == "华东").bias == pytest.approx(pooled)


def test_k_is_configurable_per_query(federation: Any) -> None:
    runners, model = federation
    q = ErrorQuery("retail-sales", ("华北",), *OCT, min_group_rows=9)
    result = _run(runners, model, q)
    assert ("华北", "市场部") in {(c.group, c.department) for c in result.cells}
    q = ErrorQuery("retail-sales", ("西南",), *OCT, min_group_rows=11)
    held = {(s.group, s.department) for s in _run(runners, model, q).suppressed}
    assert held == {("西南", "销售部")}


def test_node_aggregates_k_boundary_and_no_rows() -> None:
    groups = pd.Series(["a"] * 9 + ["b"] * 10 + ["c"] * 3)
    mask = np.ones(22, dtype=bool)
    mask[-3:] = False  # group c is outside the period
    predicted = np.arange(22, dtype=np.float64)
    actual = np.zeros(22)
    spec = node_query.QuerySpec("g", ("a", "b", "c"), "m", OCT[0], OCT[1], 10)
    answer = node_query.group_aggregates(groups, mask, predicted, actual, spec)
    agg = {n: answer.aggregates[n].tolist() for n in ANSWER_TENSORS}
    assert agg["count"] == [0.0, 10.0, 0.0] and agg["suppressed"] == [1.0, 0.0, 0.0]
    assert agg["sum_error"] == [0.0, float(sum(range(9, 19))), 0.0]  # nothing of group a
    assert answer.num_samples == 10


def _outcome(node: str, counts: list[float], flags: list[float]) -> TaskOutcome:
    n = len(counts)
    tensors = {name: np.zeros(n) for name in ANSWER_TENSORS}
    tensors["count"] = np.array(counts)
    tensors["suppressed"] = np.array(flags)
    tensors["sum_abs_error"] = np.array(counts) * 2.0
    tensors["sum_actual"] = np.array(counts) * 100.0
    tensors["sum_predicted"] = np.array(counts) * 101.0
    tensors["sum_error"] = np.array(counts) * 1.0
    tensors["sum_sq_error"] = np.array(counts) * 4.0
    return TaskOutcome(node, 0, MappingProxyType({}), Weights(tensors))


def test_coordinator_enforces_k_even_if_a_node_reports_a_small_group() -> None:
    q = ErrorQuery("job", ("x", "y"), *OCT)
    answers = {"n1": ("销售部", _outcome("n1", [9.0, 10.0], [0.0, 0.0]))}
    result = merge_answers(q, "job@v1", answers, {})
    assert [(c.group, c.rows) for c in result.cells] == [("y", 10)]
    assert [(s.group, s.department) for s in result.suppressed] == [("x", "销售部")]
    cell = result.cells[0]
    assert (cell.mae, cell.bias, cell.rmse) == (2.0, 1.0, 2.0)
    assert cell.bias_pct == pytest.approx(0.01)


def test_two_nodes_of_one_department_are_pooled_before_k() -> None:
    q = ErrorQuery("job", ("x",), *OCT)
    answers = {
        "n1": ("销售部", _outcome("n1", [6.0], [0.0])),
        "n2": ("销售部", _outcome("n2", [6.0], [0.0])),
    }
    result = merge_answers(q, "job@v1", answers, {"n3": "no answer"})
    assert [(c.department, c.rows) for c in result.cells] == [("销售部", 12)]
    assert result.missing == {"n3": "no answer"}


@pytest.mark.parametrize(
    ("name", "value", "why"),
    [
        ("count", [-1.0], "whole numbers"),
        ("count", [1.5], "whole numbers"),
        ("suppressed", [0.5], "0 or 1"),
        ("sum_error", [float("nan")], "finite"),
    ],
)
def test_malformed_node_answers_are_refused(name: str, value: list[float], why: str) -> None:
    outcome = _outcome("n1", [10.0], [0.0])
    tensors = dict(outcome.weights.items()) if outcome.weights is not None else {}
    tensors[name] = np.array(value)
    bad = TaskOutcome("n1", 0, MappingProxyType({}), Weights(tensors))
    with pytest.raises(JobError, match=why):
        merge_answers(ErrorQuery("job", ("x",), *OCT), "job@v1", {"n1": ("d", bad)}, {})


def test_query_validation_names_the_rule() -> None:
    with pytest.raises(ConfigError, match="min_group_rows must be an integer >= 1, got 0"):
        ErrorQuery("job", ("x",), *OCT, min_group_rows=0)
    with pytest.raises(ConfigError, match="ends .* before it starts"):
        ErrorQuery("job", ("x",), OCT[1], OCT[0])
    with pytest.raises(ConfigError, match="distinct"):
        ErrorQuery("job", ("x", "x"), *OCT)


def test_a_classification_job_is_refused(federation: Any) -> None:
    runners, model = federation
    fraud = CurrentModel(
        retail_spec(model={"name": "logistic_regression"}),
        "x@v1",
        model.weights,
        model.standardizer,
    )
    with pytest.raises(JobError, match="needs a regression model"):
        _run(runners, fraud, ErrorQuery("retail-sales", ("华东",), *OCT))


def test_query_keys_wire_kind_and_model_lists_mirror_the_node() -> None:
    assert {k.value for k in QueryKey} == {
        node_query.GROUP_COLUMN,
        node_query.GROUPS,
        node_query.PERIOD_COLUMN,
        node_query.START,
        node_query.END,
        node_query.MIN_GROUP_ROWS,
    }
    assert coordinator_query.ANSWER_TENSORS == node_query.ANSWER_TENSORS
    assert REGRESSION_MODELS == LEARNING_REGRESSION_MODELS
    assert pb.TaskKind.Name(pb.TASK_KIND_QUERY) == "TASK_KIND_QUERY"
    assert TaskKind.QUERY.value == "query"


def test_node_refuses_a_query_for_a_classifier(tmp_path: Path) -> None:
    files = make_retail_scenario(1, tmp_path)
    runner = DispatchRunner({"retail": LocalData("retail", files["sales"])})
    config = {
        **task_config(retail_spec(model={"name": "logistic_regression"})),
        "query.groups": "[]",
    }
    with pytest.raises(ConfigError, match="need a regression model"):
        runner.query(config, Weights({}))


def test_rows_without_consent_are_left_out_of_a_query(federation: Any, tmp_path: Path) -> None:
    runners, model = federation
    frame = pd.read_csv(make_retail_scenario(4, tmp_path)["marketing"])
    last_month = (frame["month"] == "2026-10") & (frame["region"] == "华东")
    frame["consent"] = np.where(
        last_month & (last_month.cumsum() <= 5), "no", "yes"
    )  # 5 of its 20 withdraw
    csv = tmp_path / "marketing-consent.csv"
    frame.to_csv(csv, index=False)
    spec = retail_spec()
    declared = tmp_path / "marketing.yaml"
    declared.write_text(
        yaml.safe_dump(
            {
                "name": "retail",
                "source": {"kind": "csv", "path": str(csv)},
                "target": "sales",
                "features": list(spec.data.features),
                "task": "regression",
                "consent_column": "consent",
            },
            allow_unicode=True,
        ),  # fmt: skip
        encoding="utf-8",
    )
    consenting = {**runners, "marketing": DispatchRunner({"retail": LocalData("retail", declared)})}
    q = ErrorQuery("retail-sales", ("华东",), *OCT)
    cells = {c.department: c.rows for c in _run(consenting, model, q).cells}
    assert cells["市场部"] == 15  # 20 rows last month in 华东, 5 without consent
    assert {c.department: c.rows for c in _run(runners, model, q).cells}["市场部"] == 20
