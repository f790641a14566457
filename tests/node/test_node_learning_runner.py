"""``LearningRunner`` on a generated fraud scenario: init, stats, fit, evaluate and their errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from node_support import HOLDOUT, ROWS, encoded_width

from clawfed.aggregation import ConfigValue
from clawfed.coordinator.jobspec import JobSpec
from clawfed.coordinator.task_config import task_config
from clawfed.core import ConfigError, DataError, Weights
from clawfed.data import combine, load_harmonization, load_split
from clawfed.data.scenarios import fraud_spec
from clawfed.node import learning_runner
from clawfed.node.learning_runner import (
    LearningRunner,
    LocalData,
    moments_from_weights,
    moments_weights,
)
from clawfed.node.runner import TaskRunner

DEPTS = ("card", "credit", "consumer")
METRICS = {"recall_at_1pct_fpr", "accuracy", "precision", "recall", "f1", "roc_auc", "log_loss"}


def local(folder: Path, dept: str) -> LocalData:
    return LocalData("fraud", folder / f"{dept}.csv", folder / f"{dept}.harmonization.yaml")


def runner_for(folder: Path, dept: str) -> LearningRunner:
    return LearningRunner({"fraud": local(folder, dept)})


def standardized(job: JobSpec, runners: list[LearningRunner], **kw: Any) -> dict[str, ConfigValue]:
    base = task_config(job)
    pooled = combine([moments_from_weights(r.stats(base)) for r in runners])
    return dict(task_config(job, standardizer=pooled.to_dict(), **kw))


def test_is_a_task_runner(fraud_dir: Path) -> None:
    runner: TaskRunner = runner_for(fraud_dir, "card")
    assert callable(runner.init)


def test_init_is_deterministic_for_a_seed_and_changes_with_it(
    fraud_dir: Path, fraud_job: JobSpec
) -> None:
    card, consumer = runner_for(fraud_dir, "card"), runner_for(fraud_dir, "consumer")
    config = task_config(fraud_job)
    first = card.init(config)
    assert [(s.name, s.dtype, s.shape) for s in first.spec()] == [
        ("linear.weight", "float32", (1, encoded_width())),
        ("linear.bias", "float32", (1,)),
    ]
    again = consumer.init(config)  # another department, same seed: the same weights
    assert all(first[n].tobytes() == again[n].tobytes() for n in first)
    other = fraud_job.model_copy(update={"train": {**fraud_job.train, "seed": 8}})
    changed = card.init(task_config(other))
    assert first["linear.weight"].tobytes() != changed["linear.weight"].tobytes()


def test_stats_combine_to_the_pooled_mean_and_std(fraud_dir: Path, fraud_job: JobSpec) -> None:
    config = task_config(fraud_job)
    answers = [runner_for(fraud_dir, d).stats(config) for d in DEPTS]
    for w in answers:
        assert list(w) == ["count", "sum", "m2"]
        assert w["count"].dtype == np.int64 and w["sum"].dtype == np.float64
    pooled = combine([moments_from_weights(w) for w in answers])
    assert fraud_job.data is not None
    rows = []
    for dept in DEPTS:
        spec = fraud_spec(dept, fraud_dir / f"{dept}.csv").model_copy(update={"name": "fraud"})
        train, _ = load_split(
            spec,
            load_harmonization(fraud_dir / f"{dept}.harmonization.yaml"),
            holdout_fraction=fraud_job.data.holdout_fraction,
            seed=7,
        )
        rows.append(train.features.astype(np.float64))
    union = np.vstack(rows)
    assert sum(int(w["count"][0]) for w in answers) == union.shape[0]
    np.testing.assert_allclose(pooled.mean, union.mean(axis=0), rtol=1e-9, atol=1e-12)
    std = union.std(axis=0)
    np.testing.assert_allclose(pooled.std, np.where(std == 0, 1.0, std), rtol=1e-9, atol=1e-12)


def test_stats_round_trip_through_weights(fraud_dir: Path, fraud_job: JobSpec) -> None:
    w = runner_for(fraud_dir, "consumer").stats(task_config(fraud_job))
    again = moments_weights(moments_from_weights(w))
    assert all(again[n].tobytes() == w[n].tobytes() for n in w)
    with pytest.raises(DataError, match="must hold tensors count, sum and m2"):
        moments_from_weights(Weights({"sum": w["sum"]}))


def test_fit_returns_a_finite_delta_of_the_model_spec(fraud_dir: Path, fraud_job: JobSpec) -> None:
    runners = [runner_for(fraud_dir, d) for d in DEPTS]
    config = standardized(fraud_job, runners, round_no=1)
    card = runners[0]
    start = card.init(config)
    answer = card.fit(config, start)
    assert answer.delta.spec() == start.spec()
    answer.delta.check_finite()
    assert answer.delta.l2_norm() > 0
    assert answer.num_samples == int(card.stats(config)["count"][0])
    holdout = card.evaluate(config, start).num_samples
    assert answer.num_samples + holdout == ROWS["card"]
    assert holdout == pytest.approx(HOLDOUT * ROWS["card"], abs=2)  # per class, rounded
    assert set(answer.metrics) == {"loss"} and answer.metrics["loss"] > 0
    # Deterministic for a round, different batches in another round.
    same = card.fit(config, start)
    assert all(same.delta[n].tobytes() == answer.delta[n].tobytes() for n in start)
    later = card.fit({**config, "round": 2}, start)
    assert later.delta["linear.weight"].tobytes() != answer.delta["linear.weight"].tobytes()


def test_fedprox_mu_from_the_strategy_reaches_training(fraud_dir: Path, fraud_job: JobSpec) -> None:
    runners = [runner_for(fraud_dir, d) for d in DEPTS]
    config = standardized(fraud_job, runners, round_no=1)
    start = runners[0].init(config)
    plain = runners[0].fit(config, start)
    prox = runners[0].fit({**config, "proximal_mu": 0.5}, start)
    assert "proximal_term" in prox.metrics
    assert prox.delta.l2_norm() < plain.delta.l2_norm()


def test_evaluate_reports_holdout_metrics(fraud_dir: Path, fraud_job: JobSpec) -> None:
    runners = [runner_for(fraud_dir, d) for d in DEPTS]
    config = standardized(fraud_job, runners)
    consumer = runners[2]
    start = consumer.init(config)
    answer = consumer.evaluate(config, start)
    assert answer.num_samples == pytest.approx(HOLDOUT * ROWS["consumer"], abs=2)
    assert set(answer.metrics) <= METRICS
    assert {"accuracy", "roc_auc", "log_loss"} <= set(answer.metrics)
    delta = consumer.fit(config, start).delta
    trained = Weights((n, np.add(a, delta[n])) for n, a in start.items())
    better = consumer.evaluate(config, trained)
    assert better.metrics["log_loss"] < answer.metrics["log_loss"]


def test_the_dataset_is_read_once_per_job(
    fraud_dir: Path, fraud_job: JobSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real: Callable[..., Any] = load_split  # the function learning_runner calls

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[0].name)
        return real(*args, **kwargs)

    monkeypatch.setattr(learning_runner, "load_split", counting)
    runner = runner_for(fraud_dir, "card")
    config = task_config(fraud_job)
    weights = runner.init(config)
    runner.stats(config)
    runner.fit(_with_data(fraud_job, standardize=False, round_no=1), weights)  # cached rows
    runner.evaluate(_with_data(fraud_job, standardize=False), weights)
    assert calls == ["fraud"]
    other = fraud_job.model_copy(update={"train": {**fraud_job.train, "seed": 99}})
    runner.stats(task_config(other))  # another split
    assert calls == ["fraud", "fraud"]


def test_an_edited_file_is_read_again(tmp_path: Path, fraud_dir: Path, fraud_job: JobSpec) -> None:
    csv = tmp_path / "card.csv"
    text = (fraud_dir / "card.csv").read_text(encoding="utf-8")
    csv.write_text(text, encoding="utf-8")
    runner = LearningRunner(
        {"fraud": LocalData("fraud", csv, fraud_dir / "card.harmonization.yaml")}
    )
    config = task_config(fraud_job)
    before = int(runner.stats(config)["count"][0])
    lines = text.splitlines()
    csv.write_text("\n".join(lines + lines[1:101]) + "\n", encoding="utf-8")
    assert int(runner.stats(config)["count"][0]) == before + round((1 - HOLDOUT) * 100)


def _with_data(job: JobSpec, round_no: int | None = None, **changes: Any) -> dict[str, ConfigValue]:
    assert job.data is not None
    changed = job.model_copy(update={"data": job.data.model_copy(update=changes)})
    return dict(task_config(changed, round_no=round_no))


def test_errors_name_the_dataset_and_the_column(fraud_dir: Path, fraud_job: JobSpec) -> None:
    runner = runner_for(fraud_dir, "card")
    assert fraud_job.data is not None
    with pytest.raises(ConfigError, match=r"this node offers no dataset 'sales' \(it offers: fra"):
        runner.init({**task_config(fraud_job), "dataset": "sales"})
    features = (*fraud_job.data.features, "salary")
    with pytest.raises(DataError, match=r"dataset 'fraud': feature column\(s\) \['salary'\] not"):
        runner.init(_with_data(fraud_job, features=features))
    with pytest.raises(DataError, match=r"dataset 'fraud': target column 'fraud' not found"):
        runner.init(_with_data(fraud_job, target="fraud"))
    types = {c: t for c, t in fraud_job.data.types.items() if c != "channel"}
    cats = {c: v for c, v in fraud_job.data.categories.items() if c != "channel"}
    with pytest.raises(DataError, match=r"dataset 'fraud': column\(s\) \['channel'\] hold text"):
        runner.init(_with_data(fraud_job, types=types, categories=cats))
    few = {**fraud_job.data.categories, "channel": ("app", "web")}
    with pytest.raises(DataError, match=r"column 'channel' holds \d+ value\(s\) outside its 2"):
        runner.init(_with_data(fraud_job, categories=few))


def test_fit_needs_the_pooled_standardizer(fraud_dir: Path, fraud_job: JobSpec) -> None:
    runner = runner_for(fraud_dir, "card")
    config = task_config(fraud_job)
    weights = runner.init(config)
    with pytest.raises(ConfigError, match="must run the STATS phase first"):
        runner.fit(config, weights)
    narrow = task_config(fraud_job, standardizer={"mean": [0.0] * 3, "std": [1.0] * 3})
    with pytest.raises(DataError, match=r"standardizer covers 3 feature\(s\) but this node enco"):
        runner.evaluate(narrow, weights)


def test_weights_of_another_model_are_refused(fraud_dir: Path, fraud_job: JobSpec) -> None:
    runner = runner_for(fraud_dir, "card")
    config = _with_data(fraud_job, standardize=False)
    with pytest.raises(ConfigError, match="weights do not fit the model"):
        runner.fit(config, Weights({"w": np.zeros(3, np.float32)}))


def test_custom_models_need_the_node_to_allow_their_package(
    fraud_dir: Path, fraud_job: JobSpec
) -> None:
    custom = fraud_job.model_copy(
        update={
            "model": fraud_job.model.model_copy(update={"name": None, "custom": "torch.nn:Linear"})
        }
    )
    config = task_config(custom)
    with pytest.raises(ConfigError, match="outside the packages this node allows"):
        runner_for(fraud_dir, "card").init(config)
    allowed = LearningRunner({"fraud": local(fraud_dir, "card")}, allowed_modules=["torch.nn"])
    weights = allowed.init({**config, "model.settings": json.dumps({"out_features": 1})})
    assert weights["weight"].shape == (1, encoded_width())


def test_bad_offers_and_configs_are_refused(tmp_path: Path, fraud_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"dataset 'x': file 'x.txt' must end in .csv, .parq"):
        LearningRunner({"x": LocalData("x", tmp_path / "x.txt")})
    with pytest.raises(ConfigError, match="harmonization file .* does not exist"):
        LearningRunner({"x": LocalData("x", fraud_dir / "card.csv", tmp_path / "none.yaml")})
    runner = runner_for(fraud_dir, "card")
    with pytest.raises(ConfigError, match="'model.name' must be a non-empty string, got None"):
        runner.init({"dataset": "fraud"})
    base = {"model.name": "logistic_regression", "dataset": "fraud", "data.target": "is_fraud"}
    with pytest.raises(ConfigError, match="'data.features' must hold a JSON list"):
        runner.init({**base, "data.features": '{"a": 1}'})
    with pytest.raises(ConfigError, match="'data.features' must be a JSON list of column names"):
        runner.init({**base, "data.features": '["amount", ""]'})
    with pytest.raises(ConfigError, match="'data.features' is not valid JSON"):
        runner.init({**base, "data.features": "[amount"})
    with pytest.raises(ConfigError, match="'data.holdout_fraction' must be in"):
        runner.init({**base, "data.features": '["amount"]', "data.holdout_fraction": 1.5})
    with pytest.raises(ConfigError, match="lr must be > 0, got 0"):
        runner.init({**base, "data.features": '["amount"]', "train.lr": 0})
    with pytest.raises(ConfigError, match="'data.standardizer' but 'data.standardize' is false"):
        runner.init({**base, "data.features": '["amount"]', "data.standardizer": "{}"})
