"""The job file: validation messages, the YAML round trip, and the task config it produces."""

from __future__ import annotations

import json
import typing
from dataclasses import fields
from typing import Any

import pytest
import yaml
from node_support import EXAMPLES

from clawfed.aggregation import PROXIMAL_MU_KEY
from clawfed.coordinator import jobspec, model_spec
from clawfed.coordinator.jobspec import TRAIN_KEYS, JobSpec, parse_job
from clawfed.coordinator.model_spec import BUILTIN_MODELS, MODEL_SETTINGS
from clawfed.coordinator.task_config import TRAIN_PREFIX, TaskKey, task_config
from clawfed.core import ConfigError
from clawfed.data import ColumnType
from clawfed.data.scenarios import fraud_spec
from clawfed.data.schema import category_key
from clawfed.learning import FitConfig
from clawfed.learning.custom import split_dotted_path
from clawfed.learning.models import _BUILTIN_SETTINGS, MODEL_NAMES, build_model
from clawfed.node import local_policy, task_setup

BASE: dict[str, Any] = {
    "name": "fraud",
    "model": {"name": "logistic_regression"},
    "dataset": "fraud",
    "rounds": 2,
    "data": {
        "target": "is_fraud",
        "features": ["amount", "channel", "is_foreign"],
        "types": {"amount": "numeric", "channel": "categorical"},
        "categories": {"channel": ["app", "web", "branch"]},
    },
}


def job(**changes: Any) -> str:
    doc = json.loads(json.dumps(BASE))
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        target = doc
        for p in parents:
            target = target.setdefault(p, {})
        if value is None:
            target.pop(leaf, None)
        else:
            target[leaf] = value
    return yaml.safe_dump(doc, allow_unicode=True)


def refused(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_job(text, source="fraud.yaml")
    return str(info.value)


def test_a_valid_job_parses_with_defaults() -> None:
    spec = parse_job(job())
    assert spec.data is not None
    assert spec.data.features == ("amount", "channel", "is_foreign")
    assert spec.data.holdout_fraction == 0.2 and spec.data.standardize is True
    assert spec.evaluate_every == 1
    assert spec.fit_config() == FitConfig()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"modle": {"name": "noop"}}, "fraud.yaml: modle: unknown field (check its spelling)"),
        ({"data__target_column": "y"}, "data.target_column: unknown field (check its spelling)"),
        ({"train": {"lr": -0.5}}, "train: lr must be > 0, got -0.5"),
        ({"train": {"lr": "fast"}}, "train: lr must be a number, got 'fast'"),
        ({"train": {"epochs": 0}}, "train: epochs must be >= 1, got 0"),
        ({"train": {"optimizer": "rmsprop"}}, "train: optimizer must be one of sgd, adam"),
        ({"train": {"epoch": 3}}, "train: unknown setting(s) 'epoch'; known settings are epochs"),
        ({"train": {"proximal_mu": 0.1}}, "proximal_mu is not a train setting; choose `strategy"),
        ({"train": {"optimizer": "adam", "momentum": 0.9}}, "momentum applies to sgd only"),
        (
            {"data__categories": None},
            "data: categorical feature 'channel' needs its list of categories under `categories`",
        ),
        (
            {"data__types": {"amount": "numeric", "channel": "text"}},
            "data.types.channel: Input should be 'numeric', 'categorical' or 'binary', got 'text'",
        ),
        (
            {"data__types": {"amount": "numeric", "is_foreign": "binary"}, "data__categories": {}},
            None,
        ),
        ({"data__categories": {"channel": ["app", "app"]}}, "must be a non-empty list without"),
        ({"data__categories": {"region": ["n"]}}, "categories names column(s) ['region'] that"),
        (
            {"data__types": {"amount": "numeric", "channel": "categorical", "amount2": "numeric"}},
            "types names column(s) ['amount2'] that are not features",
        ),
        ({"data__features": ["amount", "is_fraud"]}, "target 'is_fraud' must not also be a feat"),
        ({"data__features": ["amount", "amount"]}, "features lists ['amount'] more than once"),
        (
            {"data__holdout_fraction": 1},
            "data.holdout_fraction: Input should be less than 1, got 1",
        ),
        ({"data__holdout_fraction": 0}, "data.holdout_fraction: Input should be greater than 0"),
        ({"model": {"name": "xgboost"}}, "model: unknown model 'xgboost'; known models are logis"),
        (
            {"model": {"custom": "mypkg"}},
            "custom must look like 'package.module:ClassName', got 'my",
        ),
        ({"model": {"custom": "my-pkg.m:Net"}}, "custom must look like 'package.module:ClassName'"),
        ({"model": {"name": "mlp", "custom": "a.b:C"}}, "model: set exactly one of `name`"),
        ({"model": {}}, "model: set exactly one of `name`"),
        (
            {"model": {"name": "logistic_regression", "settings": {"hidden": [4]}}},
            "model logistic_regression: unknown setting(s) 'hidden'; known settings: none",
        ),
        (
            {"model": {"name": "mlp", "settings": {"hidden": [8, 0]}}},
            "setting 'hidden': layer widths must be integers >= 1, got 0",
        ),
        (
            {"model": {"name": "mlp", "settings": {"dropout": 1.5}}},
            "setting 'dropout' must be a number in [0, 1), got 1.5",
        ),
        ({"model": {"name": "noop", "settings": {"params": 0}}}, "setting 'params' must be an in"),
        ({"data": None}, "model logistic_regression trains on data: add `data` to the job file"),
        ({"dataset": None, "data": None}, "add `dataset` and `data` to the job file"),
        ({"dataset": "my data"}, "dataset: must be the name a node offers its data under"),
        ({"evaluate_every": -1}, "evaluate_every: Input should be greater than or equal to 0"),
        ({"rounds": 0}, "rounds: Input should be greater than or equal to 1, got 0"),
    ],
)
def test_invalid_jobs_are_refused_with_a_precise_message(
    changes: dict[str, Any], message: str | None
) -> None:
    text = job(**changes)
    if message is None:
        parse_job(text)  # a binary feature needs no categories
        return
    assert message in refused(text)


def test_yaml_numbers_in_exponent_form_are_read_as_numbers() -> None:
    spec = parse_job(job(train={"lr": "1e-3", "weight_decay": "5e-4"}))
    assert spec.train == {"lr": 0.001, "weight_decay": 0.0005}
    assert spec.fit_config().lr == 0.001


def test_custom_models_need_no_data_check_at_import_and_keep_settings() -> None:
    spec = parse_job(job(model={"custom": "acme.models:Net", "settings": {"width": 4}}))
    assert spec.model.custom == "acme.models:Net" and spec.model.name is None
    config = task_config(spec)
    assert config["model.custom"] == "acme.models:Net" and "model.name" not in config
    assert json.loads(str(config["model.settings"])) == {"width": 4}


@pytest.mark.parametrize(
    "path",
    ["examples/fraud-job.yaml", "examples/noop-job.yaml"],
)
def test_to_yaml_round_trips(path: str) -> None:
    spec = parse_job((EXAMPLES.parent / path).read_text(encoding="utf-8"))
    assert parse_job(spec.to_yaml()) == spec
    assert parse_job(parse_job(spec.to_yaml()).to_yaml()) == spec


def test_to_yaml_round_trips_every_option() -> None:
    spec = parse_job(
        job(
            model={"name": "mlp", "settings": {"hidden": [16, 8], "dropout": 0.1}},
            data__categories={"channel": [1, 2.0, True]},
            data__holdout_fraction=0.25,
            data__standardize=False,
            train={"epochs": 2, "lr": "1e-2", "optimizer": "adam", "seed": 9},
            participants=["a", "b"],
            strategy={"name": "fedprox", "settings": {"proximal_mu": 0.1}},
            evaluate_every=0,
        )
    )
    assert spec.data is not None
    assert spec.data.categories == {"channel": ("1", "2", "true")}
    assert parse_job(spec.to_yaml()) == spec


def test_example_fraud_job_matches_the_scenario_columns() -> None:
    spec = parse_job((EXAMPLES / "fraud-job.yaml").read_text(encoding="utf-8"))
    shared = fraud_spec("credit", "credit.csv")
    assert spec.data is not None and spec.dataset == "fraud"
    assert spec.data.target == shared.target
    assert spec.data.features == shared.features
    assert spec.data.types == {c: str(t) for c, t in shared.types.items()}
    assert spec.data.categories == shared.categories
    assert spec.model.name in BUILTIN_MODELS


def test_task_config_holds_every_key_as_a_scalar() -> None:
    spec = parse_job(job(train={"lr": 0.2, "seed": 4}, data__holdout_fraction=0.3))
    config = task_config(spec, round_no=3, standardizer={"mean": [0.0, 1.0], "std": [1.0, 2]})
    assert all(type(k) is str for k in config)
    assert all(isinstance(v, str | int | float | bool) for v in config.values())
    assert config["model.name"] == "logistic_regression"
    assert config["dataset"] == "fraud"
    assert config["data.target"] == "is_fraud"
    assert json.loads(str(config["data.features"])) == ["amount", "channel", "is_foreign"]
    assert json.loads(str(config["data.types"])) == {"amount": "numeric", "channel": "categorical"}
    assert json.loads(str(config["data.categories"])) == {"channel": ["app", "web", "branch"]}
    assert config["data.holdout_fraction"] == 0.3 and config["data.standardize"] is True
    assert json.loads(str(config["data.standardizer"])) == {"mean": [0.0, 1.0], "std": [1.0, 2.0]}
    assert config["round"] == 3
    assert {k: v for k, v in config.items() if k.startswith("train.")} == {
        "train.epochs": 1,
        "train.batch_size": 32,
        "train.lr": 0.2,
        "train.optimizer": "sgd",
        "train.momentum": 0.0,
        "train.weight_decay": 0.0,
        "train.seed": 4,
    }
    assert "data.standardizer" not in task_config(spec)
    assert "round" not in task_config(spec)


def test_task_config_refuses_a_standardizer_the_job_does_not_use() -> None:
    no_std = parse_job(job(data__standardize=False))
    with pytest.raises(ConfigError, match="the job does not standardize"):
        task_config(no_std, standardizer={"mean": [0.0], "std": [1.0]})
    spec = parse_job(job())
    with pytest.raises(ConfigError, match="exactly 'mean' and 'std'"):
        task_config(spec, standardizer={"mean": [0.0]})
    with pytest.raises(ConfigError, match="equally long, got 2 and 1"):
        task_config(spec, standardizer={"mean": [0.0, 1.0], "std": [1.0]})
    with pytest.raises(ConfigError, match="every std finite and > 0"):
        task_config(spec, standardizer={"mean": [0.0], "std": [0.0]})
    with pytest.raises(ConfigError, match="round_no must be an integer >= 0, got -1"):
        task_config(spec, round_no=-1)


def test_noop_task_config_carries_its_settings() -> None:
    spec = parse_job((EXAMPLES / "noop-job.yaml").read_text(encoding="utf-8"))
    config = task_config(spec)
    assert config["model.name"] == "noop"
    assert json.loads(str(config["model.settings"])) == {"params": 100000}
    assert not any(k.startswith("data.") for k in config) and "dataset" not in config


# The coordinator must not import torch or pandas, so jobspec and model_spec mirror a few
# lists; these tests keep the mirrors equal to the originals.


def test_model_names_mirror_learning_models() -> None:
    assert BUILTIN_MODELS == MODEL_NAMES
    for name in MODEL_NAMES:
        assert set(MODEL_SETTINGS[name]) == set(_BUILTIN_SETTINGS[name])
        build_model(name, 3, _BUILTIN_SETTINGS[name])


def test_column_kinds_mirror_column_types() -> None:
    assert set(typing.get_args(jobspec.ColumnKind)) == {t.value for t in ColumnType}


def test_train_keys_are_the_fit_config_fields_but_proximal_mu() -> None:
    assert set(TRAIN_KEYS) == {f.name for f in fields(FitConfig)} - {"proximal_mu"}


@pytest.mark.parametrize(
    "path", ["a.b:C", "pkg:Net", "a.b:Outer.Inner", "a.b.C", "noclass:", "x y:Z", ":C", "a:1b"]
)
def test_custom_path_rule_agrees_with_learning_custom(path: str) -> None:
    try:
        split_dotted_path(path)
        importable = True
    except ConfigError:
        importable = False
    accepted = model_spec._CUSTOM_PATH.fullmatch(path) is not None
    # model_spec insists on the colon form; whatever it accepts, learning.custom accepts too.
    assert accepted <= importable
    assert accepted == (importable and ":" in path)


@pytest.mark.parametrize("value", [5411, 5411.0, 2.5, True, False, "travel"])
def test_category_names_normalise_like_the_data_layer(value: object) -> None:
    assert jobspec._category_name(value) == category_key(value)


def test_task_keys_are_the_keys_the_node_reads() -> None:
    node_keys = {
        task_setup.MODEL_NAME,
        task_setup.MODEL_CUSTOM,
        task_setup.MODEL_SETTINGS,
        task_setup.DATASET,
        task_setup.TARGET,
        task_setup.FEATURES,
        task_setup.TYPES,
        task_setup.CATEGORIES,
        task_setup.HOLDOUT_FRACTION,
        task_setup.STANDARDIZE,
        task_setup.STANDARDIZER,
        task_setup.ROUND,
        PROXIMAL_MU_KEY,
        local_policy.PURPOSE,
    }
    assert {k.value for k in TaskKey} == node_keys
    assert TRAIN_PREFIX == task_setup.TRAIN_PREFIX


def test_the_node_reads_back_what_task_config_writes() -> None:
    spec: JobSpec = parse_job(
        job(
            train={"epochs": 2, "lr": 0.3, "seed": 11, "momentum": 0.5},
            data__holdout_fraction=0.4,
        )
    )
    config = task_config(spec, round_no=2, standardizer={"mean": [1.0], "std": [2.0]})
    setup = task_setup.parse_task_config({**config, "proximal_mu": 0.05})
    assert spec.data is not None
    assert setup.model == {"name": "logistic_regression"}
    assert setup.data.dataset == "fraud"
    assert setup.data.features == spec.data.features
    assert {c: str(t) for c, t in setup.data.types.items()} == spec.data.types
    assert setup.data.categories == spec.data.categories
    assert setup.data.holdout_fraction == 0.4 and setup.data.standardize is True
    assert setup.fit == FitConfig(epochs=2, lr=0.3, seed=11, momentum=0.5, proximal_mu=0.05)
    assert setup.data.seed == 11 and setup.round_no == 2
    assert setup.standardizer is not None and setup.standardizer.mean.tolist() == [1.0]
    assert setup.round_fit().seed != 11  # the batch order changes from round to round
    assert setup.round_fit() == setup.round_fit()
