"""A node applies its local policy to every task it runs, with the purpose the job names."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from clawfed.coordinator.jobspec import parse_job
from clawfed.coordinator.task_config import TaskKey, task_config
from clawfed.core import ConfigError, Weights
from clawfed.node.agent import _failure_code
from clawfed.node.dispatch import DispatchRunner
from clawfed.node.local_policy import PolicyRefusal, PolicyRule, load_node_policy, parse_policy

NOOP = "name: probe\nmodel: {name: noop, settings: {params: 3}}\nrounds: 1\n"
STRICT = "version: 1\ndepartment: credit\ndatasets: {loans: {purposes: [credit scoring]}}\n"
OPEN = STRICT + "allow_tasks_without_data: true\nprivacy: {secure_aggregation: false}\n"


def test_a_job_file_names_its_purpose_and_whether_heads_must_approve() -> None:
    spec = parse_job(NOOP + "purpose: credit scoring\nrequires_approval: true\n")
    assert spec.purpose == "credit scoring" and spec.requires_approval
    assert task_config(spec)[TaskKey.PURPOSE] == "credit scoring"
    assert TaskKey.PURPOSE not in task_config(parse_job(NOOP))
    with pytest.raises(ConfigError, match="requires_approval is true, so the job must name"):
        parse_job(NOOP + "requires_approval: true\n")
    with pytest.raises(ConfigError, match="purpose"):
        parse_job(NOOP + "purpose: ''\n")


def test_the_runner_refuses_tasks_outside_the_policy_and_logs_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runner = DispatchRunner({}, policy=parse_policy(STRICT))
    config = task_config(parse_job(NOOP))
    with caplog.at_level(logging.WARNING, "clawfed.node.dispatch"):
        for call in (runner.init, runner.stats):
            with pytest.raises(PolicyRefusal) as info:
                call(config)
            assert info.value.rule is PolicyRule.NO_DATASET
        zeros = Weights({"w": np.zeros(3, dtype=np.float32)})
        with pytest.raises(PolicyRefusal, match="names no dataset"):
            runner.fit(config, zeros)
        with pytest.raises(PolicyRefusal, match="names no dataset"):
            runner.evaluate(config, zeros)
    assert len([r for r in caplog.records if "refused a task" in r.getMessage()]) == 4
    assert _failure_code(PolicyRefusal(PolicyRule.NO_DATASET, "x")) == "refused"
    assert _failure_code(ConfigError("x")) == "node_error"


def test_a_task_inside_the_policy_runs() -> None:
    runner = DispatchRunner({}, policy=parse_policy(OPEN))
    weights = runner.init(task_config(parse_job(NOOP)))
    assert list(weights) and runner.fit(task_config(parse_job(NOOP)), weights).num_samples >= 1
    unpoliced = DispatchRunner({})
    assert list(unpoliced.init(task_config(parse_job(NOOP)))) == list(weights)


def test_a_policy_file_for_another_department_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(STRICT, encoding="utf-8")
    assert load_node_policy(path, "credit").department == "credit"
    with pytest.raises(ConfigError, match="is for department 'credit', but this node's kit"):
        load_node_policy(path, "risk")
    with pytest.raises(ConfigError, match="cannot be read"):
        load_node_policy(tmp_path / "missing.yaml", "credit")
