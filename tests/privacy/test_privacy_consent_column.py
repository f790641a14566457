"""A dataset's consent column: rows without consent are left out and only counts are reported."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clawfed.coordinator.jobspec import parse_job
from clawfed.coordinator.task_config import task_config
from clawfed.core import ConfigError, DataError
from clawfed.data import DatasetSpec, load_spec, load_split
from clawfed.node.learning_runner import LearningRunner, LocalData
from clawfed.privacy.consent import (
    ConsentCount,
    consent_filter,
    consent_rows,
    filter_consenting,
)

ROWS = 120
JOB = """
name: consent-job
model: {name: logistic_regression}
dataset: loans
data: {target: default, features: [income, age], standardize: false}
rounds: 1
train: {epochs: 1, batch_size: 16, lr: 0.1}
"""


def write_table(
    path: Path, withdrawn: set[int] = frozenset(), blank: set[int] = frozenset()
) -> None:
    rng = np.random.default_rng(7)
    income = rng.normal(10, 3, ROWS).round(2)
    age = rng.integers(20, 65, ROWS)
    default = (income + rng.normal(0, 2, ROWS) < 9).astype(int)
    consent = ["no" if i in withdrawn else "" if i in blank else "yes" for i in range(ROWS)]
    frame = pd.DataFrame({"income": income, "age": age, "default": default, "consent": consent})
    frame.to_csv(path, index=False)


def write_spec(folder: Path, consent: bool = True) -> Path:
    spec = folder / "loans.yaml"
    extra = "consent_column: consent\n" if consent else ""
    spec.write_text(
        "name: loans\nsource: {kind: csv, path: loans.csv}\ntarget: default\n"
        f"features: [income, age]\n{extra}",
        encoding="utf-8",
    )
    return spec


def test_consent_cells_yes_and_no() -> None:
    frame = pd.DataFrame(
        {"c": ["yes", "Y", "1", "true", "是", "同意", "no", "", None, "0", "否", " YES "]}
    )
    assert consent_rows(frame, "c").tolist() == [True] * 6 + [False] * 5 + [True]
    kept, count = filter_consenting(frame, "c")
    assert count == ConsentCount(rows_used=7, rows_excluded_no_consent=5)
    assert len(kept) == 7
    assert count.as_metrics() == {"rows_used": 7.0, "rows_excluded_no_consent": 5.0}
    with pytest.raises(DataError, match="consent column 'missing' not found"):
        consent_rows(frame, "missing")


def test_filter_refuses_a_table_where_nobody_consents() -> None:
    keep = consent_filter("loans", "c")
    assert keep is not None and consent_filter("loans", None) is None
    with pytest.raises(DataError, match="dataset 'loans': no row consents"):
        keep(pd.DataFrame({"c": ["no", ""]}))


def test_spec_validates_the_consent_and_text_options() -> None:
    base = {"name": "d", "source": {"kind": "csv", "path": "x.csv"}, "target": "y"}
    with pytest.raises(ValueError, match="consent_column 'a' must not be the target or a feature"):
        DatasetSpec.model_validate({**base, "features": ["a"], "consent_column": "a"})
    with pytest.raises(ValueError, match="redact: true needs a text_column"):
        DatasetSpec.model_validate({**base, "features": ["a"], "redact": True})


def test_load_split_leaves_out_rows_without_consent(tmp_path: Path) -> None:
    write_table(tmp_path / "loans.csv", withdrawn=set(range(10)), blank={50, 51})
    spec = load_spec(write_spec(tmp_path))
    keep = consent_filter(spec.name, spec.consent_column)
    train, holdout = load_split(spec, holdout_fraction=0.25, seed=1, rows=keep)
    assert train.num_rows + holdout.num_rows == ROWS - 12
    assert train.excluded_no_consent == holdout.excluded_no_consent == 12
    everything, _ = load_split(spec, holdout_fraction=0.25, seed=1)
    assert everything.excluded_no_consent == 0


def test_node_reports_counts_and_a_withdrawal_takes_effect_next_task(tmp_path: Path) -> None:
    csv = tmp_path / "loans.csv"
    write_table(csv, withdrawn={3})
    runner = LearningRunner({"loans": LocalData("loans", write_spec(tmp_path))})
    config = task_config(parse_job(JOB))
    weights = runner.init(config)
    first = runner.fit(config, weights)
    assert first.metrics["rows_excluded_no_consent"] == 1.0
    assert first.metrics["rows_used"] == float(first.num_samples)
    evaluated = runner.evaluate(config, weights)
    assert evaluated.metrics["rows_excluded_no_consent"] == 1.0
    assert evaluated.metrics["holdout_rows_used"] == float(evaluated.num_samples)
    assert first.num_samples + evaluated.num_samples == ROWS - 1

    stamp = csv.stat().st_mtime_ns
    write_table(csv, withdrawn=set(range(0, ROWS, 4)))  # 30 subjects withdraw
    os.utime(csv, ns=(stamp + 10**9, stamp + 10**9))
    second = runner.fit(config, weights)
    assert second.metrics["rows_excluded_no_consent"] == 30.0
    assert second.num_samples + runner.evaluate(config, weights).num_samples == ROWS - 30
    stats = runner.stats(config)  # the federated statistics see the same rows
    assert int(stats["count"][0]) == second.num_samples


def test_without_a_consent_column_no_counts_are_sent(tmp_path: Path) -> None:
    write_table(tmp_path / "loans.csv", withdrawn={1, 2})
    runner = LearningRunner({"loans": LocalData("loans", write_spec(tmp_path, consent=False))})
    config = task_config(parse_job(JOB))
    answer = runner.fit(config, runner.init(config))
    assert "rows_excluded_no_consent" not in answer.metrics
    assert answer.num_samples + runner.evaluate(config, runner.init(config)).num_samples == ROWS


def test_a_missing_consent_column_is_a_clear_error(tmp_path: Path) -> None:
    write_table(tmp_path / "loans.csv")
    spec = write_spec(tmp_path)
    spec.write_text(spec.read_text().replace("consent_column: consent", "consent_column: agree"))
    runner = LearningRunner({"loans": LocalData("loans", spec)})
    with pytest.raises(DataError, match="dataset 'loans': consent column 'agree' not found"):
        runner.init(task_config(parse_job(JOB)))
    with pytest.raises(ConfigError):
        runner.init({**task_config(parse_job(JOB)), "dataset": "other"})
