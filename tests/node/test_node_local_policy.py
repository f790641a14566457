"""The node's local policy file, and the check every task must pass on the node."""

from __future__ import annotations

from pathlib import Path

import pytest

from clawfed.aggregation import ConfigValue
from clawfed.core.errors import ConfigError
from clawfed.node.local_policy import (
    LocalPolicy,
    PolicyRefusal,
    PolicyRule,
    TaskUse,
    check_task,
    load_policy,
    parse_policy,
)

POLICY = """
version: 1
department: 信贷部
datasets:
  transactions:
    purposes: [fraud-detection, Credit Risk]
    description: card transactions, last 12 months
  branches:
    purposes: [restocking]
privacy:
  secure_aggregation: true
  max_epsilon: 3.0
  max_delta: 1.0e-5
  min_group_size: 20
"""

GOOD: dict[str, ConfigValue] = {
    "model": "logreg",
    "dataset": "transactions",
    "purpose": "fraud-detection",
    "privacy.secure_aggregation": True,
    "privacy.epsilon": 2.5,
    "privacy.delta": 1e-6,
}


@pytest.fixture
def policy() -> LocalPolicy:
    return parse_policy(POLICY)


def test_a_task_inside_the_policy_runs(policy: LocalPolicy) -> None:
    assert check_task(policy, GOOD) is None
    assert check_task(policy, {**GOOD, "purpose": "credit  risk"}) is None  # case, spaces
    assert check_task(policy, {**GOOD, "privacy.epsilon": 3}) is None  # the bound itself
    query = {**GOOD, "query.min_group_size": 20}
    assert check_task(policy, query, TaskUse.QUERY) is None
    pure_dp = {k: v for k, v in GOOD.items() if k != "privacy.delta"}
    assert check_task(policy, pure_dp) is None


@pytest.mark.parametrize(
    ("change", "rule", "words"),
    [
        ({"dataset": None}, PolicyRule.NO_DATASET, "offers (branches, transactions)"),
        ({"dataset": "payroll"}, PolicyRule.UNKNOWN_DATASET, "'payroll' is not offered"),
        ({"dataset": 7}, PolicyRule.UNKNOWN_DATASET, "7 is not offered"),
        ({"purpose": None}, PolicyRule.NO_PURPOSE, "must name its purpose"),
        ({"purpose": " "}, PolicyRule.NO_PURPOSE, "fraud-detection, Credit Risk"),
        ({"purpose": "marketing"}, PolicyRule.PURPOSE_NOT_ALLOWED, "not be used for 'marketing'"),
        ({"dataset": "branches"}, PolicyRule.PURPOSE_NOT_ALLOWED, "allowed: restocking"),
        ({"privacy.secure_aggregation": None}, PolicyRule.SECURE_AGGREGATION_OFF, "requires"),
        ({"privacy.secure_aggregation": False}, PolicyRule.SECURE_AGGREGATION_OFF, "off"),
        ({"privacy.secure_aggregation": "yes"}, PolicyRule.BAD_VALUE, "true or false"),
        ({"privacy.epsilon": None}, PolicyRule.NO_DIFFERENTIAL_PRIVACY, "epsilon <= 3.0"),
        ({"privacy.epsilon": 3.01}, PolicyRule.EPSILON_TOO_HIGH, "<= 3.0 here, got 3.01"),
        ({"privacy.epsilon": 0}, PolicyRule.BAD_VALUE, "epsilon must be > 0"),
        ({"privacy.epsilon": float("inf")}, PolicyRule.BAD_VALUE, "finite number"),
        ({"privacy.epsilon": True}, PolicyRule.BAD_VALUE, "finite number"),
        ({"privacy.epsilon": "1"}, PolicyRule.BAD_VALUE, "finite number"),
        ({"privacy.delta": 1e-4}, PolicyRule.DELTA_TOO_HIGH, "<= 1e-05 here, got 0.0001"),
        ({"privacy.delta": -1e-9}, PolicyRule.BAD_VALUE, "delta in [0, 1)"),
    ],
)
def test_tasks_outside_the_policy_are_refused_with_the_rule(
    policy: LocalPolicy, change: dict[str, ConfigValue | None], rule: PolicyRule, words: str
) -> None:
    task = {**GOOD, **change}
    task = {k: v for k, v in task.items() if v is not None}
    with pytest.raises(PolicyRefusal) as info:
        check_task(policy, task)
    assert info.value.rule is rule
    assert words in str(info.value)
    assert str(info.value).startswith(f"task refused by this node's local policy ({rule})")


@pytest.mark.parametrize("size", [None, 19, "20", True, 2.0])
def test_queries_must_cover_the_minimum_group(policy: LocalPolicy, size: object) -> None:
    task = dict(GOOD)
    if size is not None:
        task["query.min_group_size"] = size  # type: ignore[assignment]
    with pytest.raises(PolicyRefusal, match="at least 20 records") as info:
        check_task(policy, task, TaskUse.QUERY)
    assert info.value.rule is PolicyRule.GROUP_TOO_SMALL
    assert check_task(policy, task) is None  # a training task sets no group size


def test_defaults_are_strict() -> None:
    bare = parse_policy("datasets: {tx: {purposes: [fraud]}}")
    assert bare.privacy.secure_aggregation and bare.privacy.min_group_size == 10
    assert not bare.allow_tasks_without_data
    with pytest.raises(PolicyRefusal) as info:
        check_task(bare, {"dataset": "tx", "purpose": "fraud"})
    assert info.value.rule is PolicyRule.SECURE_AGGREGATION_OFF
    assert check_task(bare, {"dataset": "tx", "purpose": "fraud",
                             "privacy.secure_aggregation": True}) is None  # fmt: skip
    with pytest.raises(PolicyRefusal, match=r"offers \(none\)"):
        check_task(parse_policy("{}"), {"model": "noop"})


def test_tasks_without_data_run_only_when_allowed() -> None:
    open_policy = parse_policy("allow_tasks_without_data: true")
    assert check_task(open_policy, {"model": "noop", "model.params": 10}) is None
    with pytest.raises(PolicyRefusal, match="not offered"):
        check_task(open_policy, {"model": "noop", "dataset": "tx"})


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("datasets: [tx]", "datasets: Input should be a valid dictionary"),
        ("datasets: {tx: {purposes: []}}", "datasets.tx.purposes: Tuple should have at least 1"),
        ("datasets: {tx: {purposes: [a, ' A ']}}", "datasets.tx.purposes: lists a more than once"),
        ("datasets: {tx: {purposes: ['  ']}}", "purposes must not be blank"),
        ("datasets: {tx: {purposes: [a], owner: bob}}", "datasets.tx.owner: unknown field"),
        ("datasets: {' tx': {purposes: [a]}}", "without edge spaces"),
        ("privacy: {max_epsilon: 0}", "privacy.max_epsilon: Input should be greater than 0"),
        ("privacy: {max_epsilon: .nan}", "privacy.max_epsilon: Input should be a finite number"),
        ("privacy: {max_delta: 1}", "privacy.max_delta: Input should be less than 1"),
        ("privacy: {min_group_size: 0}", "privacy.min_group_size: Input should be greater than"),
        ("privacy: {secure_aggregation: maybe}", "privacy.secure_aggregation: Input should be"),
        ("privacy: {max_epsilon: 1, epsilon: 2}", "privacy.epsilon: unknown field"),
        ("version: 2", "version: Input should be 1 (got 2)"),
        (
            "datasets: {tx: {purposes: [a]}}\nextra: 1",
            "extra: unknown field (check its spelling) (got 1)",
        ),
        ("[1, 2]", "expected a mapping"),
        ("datasets: {tx: [", "not valid YAML"),
    ],
)
def test_bad_policy_files_are_refused_precisely(text: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_policy(text, source="policy.yaml")
    assert str(info.value).startswith("policy.yaml: ")
    assert words in str(info.value)


def test_load_policy_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY, encoding="utf-8")
    policy = load_policy(path)
    assert policy.department == "信贷部" and sorted(policy.datasets) == ["branches", "transactions"]
    assert policy.datasets["transactions"].purposes == ("fraud-detection", "Credit Risk")
    with pytest.raises(ConfigError, match="cannot be read"):
        load_policy(tmp_path / "missing.yaml")
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="cannot be read"):
        load_policy(path)


def test_the_policy_is_immutable(policy: LocalPolicy) -> None:
    with pytest.raises(ValueError, match="frozen"):
        policy.privacy.max_epsilon = 100.0  # type: ignore[misc]
