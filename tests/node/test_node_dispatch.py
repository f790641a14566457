"""``DispatchRunner``: routing by model, ``--data`` parsing, and the Hello metadata canary."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from node_support import EXAMPLES, HOLDOUT, ROWS, encoded_width

from clawfed.coordinator.jobspec import JobSpec, parse_job
from clawfed.coordinator.task_config import task_config
from clawfed.core import ConfigError
from clawfed.data.scenarios import CHANNELS, MERCHANTS, REGIONS
from clawfed.node.dispatch import DispatchRunner, LocalData, parse_data_args

NOOP = "name: n\nmodel: {name: noop, settings: {params: 7}}\nrounds: 1\n"


def card_runner(folder: Path, path: str = "card.csv") -> DispatchRunner:
    mapping = folder / "card.harmonization.yaml"
    return DispatchRunner({"fraud": LocalData("fraud", folder / path, mapping)})


def test_noop_tasks_go_to_the_noop_runner(fraud_dir: Path) -> None:
    runner = card_runner(fraud_dir)
    config = task_config(parse_job(NOOP))
    weights = runner.init(config)
    assert list(weights) == ["w"] and weights["w"].shape == (7,)
    answer = runner.fit(config, weights)
    assert answer.num_samples == 1 and not answer.delta["w"].any()
    assert runner.evaluate(config, weights).num_samples == 1
    with pytest.raises(ConfigError, match="model noop has no data"):
        runner.stats(config)
    # A node without any dataset still runs noop jobs.
    assert DispatchRunner({}).init(config)["w"].shape == (7,)


def test_learning_tasks_go_to_the_learning_runner(fraud_dir: Path, fraud_job: JobSpec) -> None:
    runner = card_runner(fraud_dir)
    config = task_config(fraud_job)
    weights = runner.init(config)
    assert list(weights) == ["linear.weight", "linear.bias"]
    stats = runner.stats(config)
    count = int(stats["count"][0])
    assert count == pytest.approx((1 - HOLDOUT) * ROWS["card"], abs=2)
    std = {"mean": np.divide(stats["sum"], count).tolist(), "std": [1.0] * encoded_width()}
    answer = runner.fit(task_config(fraud_job, round_no=1, standardizer=std), weights)
    assert answer.delta.spec() == weights.spec() and answer.num_samples == count
    held = runner.evaluate(task_config(fraud_job, standardizer=std), weights).num_samples
    assert held + count == ROWS["card"]


def test_a_task_without_a_model_is_refused(fraud_dir: Path) -> None:
    runner = card_runner(fraud_dir)
    with pytest.raises(ConfigError, match="names no model: it needs 'model.name' or 'model.cu"):
        runner.init({"model": "noop"})
    with pytest.raises(ConfigError, match="'model.settings' must hold a JSON object"):
        runner.init({"model.name": "noop", "model.settings": "[1]"})


def test_parse_data_args(tmp_path: Path) -> None:
    csv = tmp_path / "t.csv"
    csv.write_text("a,b\n1,2\n", encoding="utf-8")
    mapping = tmp_path / "m.yaml"
    mapping.write_text("{}\n", encoding="utf-8")
    got = parse_data_args([f"fraud={csv}"], [f"fraud={mapping}"])
    assert got == {"fraud": LocalData("fraud", csv, mapping)}
    with pytest.raises(ConfigError, match="--data expects NAME=PATH, got 'fraud'"):
        parse_data_args(["fraud"], [])
    with pytest.raises(ConfigError, match="--mapping for unknown dataset"):
        parse_data_args([f"fraud={csv}"], [f"sales={mapping}"])
    with pytest.raises(ConfigError, match="file .* does not exist"):
        parse_data_args([f"fraud={tmp_path / 'none.csv'}"], [])


def _names(folder: Path) -> list[str]:
    names: list[str] = pd.read_csv(folder / "card.csv")["customer_name"].astype(str).tolist()
    assert len(names) == ROWS["card"] and all(names)
    return names


def test_hello_profile_of_a_dataset_spec_holds_no_customer_name(
    fraud_dir: Path, fraud_job: JobSpec
) -> None:
    runner = card_runner(fraud_dir, "card.dataset.yaml")
    # A dataset spec names the source; the job still decides the columns.
    csv_runner = card_runner(fraud_dir)
    config = task_config(fraud_job)
    assert runner.stats(config)["count"][0] == csv_runner.stats(config)["count"][0]
    ((name, meta_json),) = runner.describe()
    assert name == "fraud"
    meta = json.loads(meta_json)
    meta_json = json.dumps(meta, ensure_ascii=False)  # search the text, not \u escapes
    assert meta["file"] == "card.dataset.yaml" and meta["format"] == "csv"
    assert meta["bytes"] == (fraud_dir / "card.csv").stat().st_size
    prof = meta["profile"]
    assert prof["rows"] == ROWS["card"] and prof["target"] == "is_fraud"
    assert set(prof["schema"]) == {"is_fraud", *json.loads(str(_features()))}
    assert 0 < prof["missing_rate"]["account_age_days"] < 0.3  # before imputation
    assert prof["missing_rate"]["account_age_days__missing"] == 0.0
    assert set(prof["label_balance"]) == {"0", "1"}
    assert "error" not in meta
    # Canary: no customer name (nor any cell of the table's text columns) is sent.
    assert not any(n in meta_json for n in _names(fraud_dir))
    raw = pd.read_csv(fraud_dir / "card.csv")
    assert not any(t in meta_json for t in raw["txn_id"].astype(str))
    for category in (*MERCHANTS, *CHANNELS, *REGIONS):  # category names are values too
        assert len(category) < 5 or category not in meta_json


def _features() -> str:
    spec = parse_job((EXAMPLES / "fraud-job.yaml").read_text(encoding="utf-8"))
    return task_config(spec)["data.features"]  # type: ignore[return-value]


def test_hello_of_a_bare_csv_gives_file_facts_only(fraud_dir: Path) -> None:
    ((_, meta_json),) = card_runner(fraud_dir).describe()
    meta = json.loads(meta_json)
    assert meta == {
        "file": "card.csv",
        "format": "csv",
        "bytes": (fraud_dir / "card.csv").stat().st_size,
        "rows": ROWS["card"],
    }
    assert not any(n in meta_json for n in _names(fraud_dir))


def test_hello_of_parquet_and_of_unreadable_files(tmp_path: Path, fraud_dir: Path) -> None:
    table = tmp_path / "t.parquet"
    pd.DataFrame({"a": np.arange(12), "b": ["secret-value"] * 12}).to_parquet(table)
    ((_, meta_json),) = DispatchRunner({"t": LocalData("t", table)}).describe()
    assert json.loads(meta_json)["rows"] == 12 and "secret-value" not in meta_json
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet at all")
    ((_, meta_json),) = DispatchRunner({"b": LocalData("b", broken)}).describe()
    meta = json.loads(meta_json)
    assert "rows" not in meta and "cannot be read" in meta["error"]
    spec = tmp_path / "bad.dataset.yaml"
    spec.write_text(
        "name: bad\nsource: {kind: csv, path: " + str(fraud_dir / "card.csv") + "}\n"
        "target: is_fraud\nfeatures: [salary]\n",
        encoding="utf-8",
    )
    ((_, meta_json),) = DispatchRunner({"bad": LocalData("bad", spec)}).describe()
    assert "feature column(s) ['salary'] not found" in json.loads(meta_json)["error"]
    assert not any(n in meta_json for n in _names(fraud_dir))
