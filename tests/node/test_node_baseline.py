"""The demo's reference models: each department alone, and all training rows pooled."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from node_support import ROWS

from clawfed.coordinator.jobspec import JobSpec
from clawfed.coordinator.task_config import task_config
from clawfed.core import ConfigError
from clawfed.data import combine
from clawfed.node.baseline import local_baseline, pooled_reference, training_rows
from clawfed.node.learning_runner import LearningRunner, LocalData, moments_from_weights


def _local(folder: Path, dept: str) -> LocalData:
    return LocalData("fraud", folder / f"{dept}.csv", folder / f"{dept}.harmonization.yaml")


def test_training_rows_are_the_rows_the_node_trains_on(fraud_dir: Path, fraud_job: JobSpec) -> None:
    config = task_config(fraud_job)
    for dept in ROWS:
        local = _local(fraud_dir, dept)
        rows = training_rows(local, config)
        runner = LearningRunner({"fraud": local})
        stats = moments_from_weights(runner.stats(config))
        assert rows.num_samples == stats.count
        np.testing.assert_allclose(rows.features.sum(axis=0), stats.sum, rtol=1e-5, atol=1e-3)
        scaled = task_config(fraud_job, standardizer=combine([stats]).to_dict())
        held = runner.evaluate(scaled, runner.init(config)).num_samples
        assert rows.num_samples + held == ROWS[dept]


def test_pooled_over_one_department_is_that_department_alone(
    fraud_dir: Path, fraud_job: JobSpec
) -> None:
    """Same start, settings, rows and batch order: pooling one department changes nothing."""
    config = task_config(fraud_job)
    local = _local(fraud_dir, "card")
    pooled = pooled_reference({"card": local}, config, 3)
    alone = local_baseline(LearningRunner({"fraud": local}), config, 3)
    assert set(pooled) == {"card"}
    assert pooled["card"]["roc_auc"] == pytest.approx(alone["roc_auc"], abs=1e-9)
    assert pooled["card"]["log_loss"] == pytest.approx(alone["log_loss"], rel=1e-5)


def test_pooled_reference_scores_every_department(fraud_dir: Path, fraud_job: JobSpec) -> None:
    config = task_config(fraud_job)
    datasets = {dept: _local(fraud_dir, dept) for dept in ROWS}
    first = pooled_reference(datasets, config, 2)
    assert list(first) == list(ROWS)
    assert first == pooled_reference(datasets, config, 2)  # deterministic
    for metrics in first.values():
        assert 0.0 < metrics["roc_auc"] <= 1.0
        assert 0.0 <= metrics["recall_at_1pct_fpr"] <= 1.0
    # More rounds train further, which moves the holdout loss.
    assert (
        first["credit"]["log_loss"] != pooled_reference(datasets, config, 1)["credit"]["log_loss"]
    )


def test_pooled_reference_refuses_bad_arguments(fraud_dir: Path, fraud_job: JobSpec) -> None:
    config = task_config(fraud_job)
    with pytest.raises(ConfigError, match="rounds must be an integer >= 1, got 0"):
        pooled_reference({"card": _local(fraud_dir, "card")}, config, 0)
    with pytest.raises(ConfigError, match="needs at least one department's dataset, got none"):
        pooled_reference({}, config, 1)
