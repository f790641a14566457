"""The synthetic three-department fraud scenario: determinism, heterogeneity, and pooling gain."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from clawfed.aggregation import FedAvg
from clawfed.cli.demo import FRAUD_SEED
from clawfed.coordinator.jobspec import parse_job
from clawfed.coordinator.task_config import task_config
from clawfed.core import Update
from clawfed.core.errors import ConfigError
from clawfed.data import (
    LocalDataset,
    combine,
    load_dataset,
    load_harmonization,
    load_spec,
    load_split,
    local_moments,
    profile,
    read_frame,
)
from clawfed.data.scenarios import (
    CHANNELS,
    DEFAULT_FRAUD_ROWS,
    FRAUD_DEPARTMENTS,
    FRAUD_FEATURES,
    HOURS,
    MERCHANTS,
    REGIONS,
    make_fraud_scenario,
)
from clawfed.node.baseline import local_baseline
from clawfed.node.learning_runner import LearningRunner, LocalData, moments_from_weights

SMALL = {"card": 300, "credit": 300, "consumer": 300}
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _load(folder: Path, dept: str) -> LocalDataset:
    spec = load_spec(folder / f"{dept}.dataset.yaml")
    return load_dataset(spec, load_harmonization(folder / f"{dept}.harmonization.yaml"))


def test_same_seed_same_files(tmp_path: Path) -> None:
    first = make_fraud_scenario(5, SMALL, tmp_path / "a")
    make_fraud_scenario(5, SMALL, tmp_path / "b")
    make_fraud_scenario(6, SMALL, tmp_path / "c")
    assert set(first) == {"card", "credit", "consumer"}
    assert first["card"] == tmp_path / "a" / "card.csv"
    a, b, c = (_files(tmp_path / n) for n in "abc")
    assert len(a) == 9  # csv, harmonization and dataset spec per department
    assert a == b
    assert a["card.csv"] != c["card.csv"]
    # A department's rows depend on the seed and its id only.
    make_fraud_scenario(5, {"consumer": 300}, tmp_path / "d")
    assert _files(tmp_path / "d")["consumer.csv"] == a["consumer.csv"]


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown department\(s\) \['sales'\]; known: "):
        make_fraud_scenario(0, {"sales": 100}, tmp_path)
    with pytest.raises(
        ConfigError, match=r"rows_per_dept\['consumer'\] must be an integer >= 20, got 5"
    ):
        make_fraud_scenario(0, {"consumer": 5}, tmp_path)
    with pytest.raises(ConfigError, match="at least one department"):
        make_fraud_scenario(0, {}, tmp_path)


def test_departments_differ_before_harmonization(tmp_path: Path) -> None:
    paths = make_fraud_scenario(11, {"card": 2000, "credit": 2000, "consumer": 2000}, tmp_path)
    raw = {d: pd.read_csv(p) for d, p in paths.items()}
    assert "risk_rating" in raw["card"].columns
    assert "risk_score" in raw["credit"].columns and "amount" not in raw["credit"]
    assert "risk_level" in raw["consumer"].columns
    # Risk scales: 1-5, 1-10, 1-5.
    assert raw["card"]["risk_rating"].between(1, 5).all()
    assert raw["credit"]["risk_score"].max() > 5
    assert raw["credit"]["risk_score"].dropna().between(1, 10).all()
    assert raw["consumer"]["risk_level"].between(1, 5).all()
    # Missing-value patterns.
    assert raw["card"]["account_age_days"].isna().mean() > 0.03
    assert raw["credit"]["account_age_days"].notna().all()
    assert (raw["credit"]["dispute_count"] == -1).mean() > 0.05
    assert raw["consumer"]["hour"].isna().mean() > 0.05
    assert raw["card"]["hour"].notna().all()
    # Encodings and coverage.
    assert set(raw["consumer"]["is_foreign"]) == {"Y", "N"}
    assert raw["consumer"]["hour"].dropna().between(8, 18).all()
    assert (raw["credit"]["txn_hour"] < 6).any()
    # Non-IID labels.
    rates = {
        "card": raw["card"]["is_fraud"].mean(),
        "credit": raw["credit"]["fraud_flag"].mean(),
        "consumer": raw["consumer"]["is_fraud"].mean(),
    }
    assert rates["credit"] < rates["card"] < rates["consumer"]
    assert rates["consumer"] > 2 * rates["card"]
    assert 0.005 < rates["credit"] and rates["consumer"] < 0.1  # fraud is rare everywhere
    # Coverage: each department mostly sees the merchant groups and provinces of its business.
    merchants = {
        "card": raw["card"]["merchant_category"],
        "credit": raw["credit"]["mcc_group"],
        "consumer": raw["consumer"]["merchant_category"],
    }
    usual = {"card": "grocery", "credit": "money_transfer", "consumer": "online_gaming"}
    for dept, group in usual.items():
        for other, column in merchants.items():
            if other != dept:
                assert (column == group).mean() < (merchants[dept] == group).mean() / 2
    assert (raw["card"]["region"] == "beijing").mean() > 2 * (
        raw["consumer"]["region"] == "beijing"
    ).mean()


def test_the_bank_departments() -> None:
    assert dict(FRAUD_DEPARTMENTS) == {
        "credit": "信贷部",
        "card": "信用卡中心",
        "consumer": "消费金融部",
    }
    assert list(DEFAULT_FRAUD_ROWS) == list(FRAUD_DEPARTMENTS)


def test_fraud_patterns_differ_between_departments(tmp_path: Path) -> None:
    """Same features and rule, but each department's frauds come from its own business."""
    paths = make_fraud_scenario(4, dict.fromkeys(FRAUD_DEPARTMENTS, 8000), tmp_path)
    frauds = {}
    for dept, path in paths.items():
        frame = pd.read_csv(path).rename(columns={"mcc_group": "merchant_category"})
        label = "fraud_flag" if "fraud_flag" in frame else "is_fraud"
        frauds[dept] = frame[frame[label] == 1]
    top = {d: f["merchant_category"].value_counts().index[0] for d, f in frauds.items()}
    assert top["credit"] in ("money_transfer", "airline", "car_rental", "travel")
    assert top["card"] in ("jewelry", "luxury", "electronics")
    assert top["consumer"] in ("crypto_exchange", "gift_cards", "online_gaming", "lottery")
    night = {d: (f.get("hour", f.get("txn_hour")) < 6).mean() for d, f in frauds.items()}
    assert night["card"] > 0.1 and night["consumer"] == 0.0
    young = {d: (f["account_age_days"] < 365).mean() for d, f in frauds.items()}
    assert young["consumer"] > 2 * max(young["credit"], young["card"])


def test_harmonization_makes_departments_equal(tmp_path: Path) -> None:
    make_fraud_scenario(11, {"card": 2000, "credit": 2000, "consumer": 2000}, tmp_path)
    datasets = {d: _load(tmp_path, d) for d in FRAUD_DEPARTMENTS}
    names = {ds.feature_names for ds in datasets.values()}
    assert len(names) == 1
    (shared,) = names
    # hours, merchant groups, channels, provinces one-hot; 5 other columns; 4 indicators
    assert (len(HOURS), len(MERCHANTS), len(CHANNELS), len(REGIONS)) == (24, 30, 6, 31)
    assert len(shared) == 24 + 30 + 6 + 31 + 5 + 4
    risk = shared.index("risk_rating")
    for ds in datasets.values():
        column = ds.features[:, risk]
        assert column.min() == 0.0 and column.max() <= 1.0
        assert np.isfinite(ds.features).all()
    grids = {d: np.unique(ds.features[:, risk]) for d, ds in datasets.items()}
    for dept, steps in (("card", 4), ("consumer", 4), ("credit", 9)):
        scaled = grids[dept] * steps  # ratings 1..5 -> quarters, 1..10 -> ninths of [0, 1]
        np.testing.assert_allclose(scaled, np.round(scaled), atol=1e-5)
    assert len(grids["credit"]) > 5 >= len(grids["card"])
    missing = shared.index("hour__missing")
    assert datasets["consumer"].features[:, missing].mean() > 0.05
    assert datasets["card"].features[:, missing].sum() == 0
    # Hours are categories, one-hot for every row (consumer's gaps get its most common hour);
    # consumer finance approves in office hours, so it has no night hour at all.
    hours = [shared.index(f"hour={h}") for h in range(24)]
    for ds in datasets.values():
        np.testing.assert_array_equal(ds.features[:, hours].sum(axis=1), 1.0)
    assert datasets["consumer"].features[:, hours[:8]].sum() == 0
    assert datasets["card"].features[:, hours[:6]].sum() > 0


def test_customer_names_are_no_feature_and_stay_out_of_profiles(tmp_path: Path) -> None:
    paths = make_fraud_scenario(3, SMALL, tmp_path)
    for dept, path in paths.items():
        names = pd.read_csv(path)["customer_name"]
        assert names.str.len().between(2, 3).all()
        spec = load_spec(tmp_path / f"{dept}.dataset.yaml")
        assert spec.features == FRAUD_FEATURES
        assert "customer_name" not in spec.features
        frame = read_frame(spec, load_harmonization(tmp_path / f"{dept}.harmonization.yaml"))
        text = json.dumps(profile(frame, spec).to_dict(), ensure_ascii=False)
        assert not any(name in text for name in names)


def test_pooled_model_beats_each_department_alone(tmp_path: Path) -> None:
    """Logistic regression on all three departments' training rows vs on one department's.

    Each department has only tens of frauds for about 100 encoded features, a third of its
    rows in categories it rarely sees: pooling the frauds ranks its own holdout clearly better.
    """
    gains: dict[str, list[float]] = {d: [] for d in FRAUD_DEPARTMENTS}
    for seed in range(5):
        folder = tmp_path / str(seed)
        make_fraud_scenario(seed, DEFAULT_FRAUD_ROWS, folder)
        parts = {
            d: load_split(
                load_spec(folder / f"{d}.dataset.yaml"),
                load_harmonization(folder / f"{d}.harmonization.yaml"),
                holdout_fraction=0.5,
                seed=0,
            )
            for d in FRAUD_DEPARTMENTS
        }
        shared = combine([local_moments(train.features) for train, _ in parts.values()])
        pooled = LogisticRegression(max_iter=5000).fit(
            np.vstack([shared.transform(t.features) for t, _ in parts.values()]),
            np.concatenate([t.labels for t, _ in parts.values()]),
        )
        for dept, (train, holdout) in parts.items():
            own = combine([local_moments(train.features)])
            alone = LogisticRegression(max_iter=5000).fit(
                own.transform(train.features), train.labels
            )
            auc_alone = roc_auc_score(
                holdout.labels, alone.predict_proba(own.transform(holdout.features))[:, 1]
            )
            auc_pooled = roc_auc_score(
                holdout.labels, pooled.predict_proba(shared.transform(holdout.features))[:, 1]
            )
            gains[dept].append(float(auc_pooled - auc_alone))
    for dept, gain in gains.items():
        assert np.mean(gain) >= 0.03, (dept, gain)
        assert sum(g >= 0.02 for g in gain) >= 4, (dept, gain)


def test_the_demo_federation_beats_every_department_alone(tmp_path: Path) -> None:
    """`clawfed demo`'s data (its seed, default rows) and job: FedAvg vs each department alone.

    The same pipeline as the demo, in-process: pooled standardization, FedAvg over the three
    departments' runners for the job's 10 rounds, and ``local_baseline`` with the same
    settings and as many local passes, both scored on each department's holdout.
    """
    make_fraud_scenario(FRAUD_SEED, DEFAULT_FRAUD_ROWS, tmp_path)
    runners = {
        d: LearningRunner(
            {
                "fraud": LocalData(
                    "fraud", tmp_path / f"{d}.csv", tmp_path / f"{d}.harmonization.yaml"
                )
            }
        )
        for d in FRAUD_DEPARTMENTS
    }
    job = parse_job((EXAMPLES / "fraud-job.yaml").read_text(encoding="utf-8"))
    rounds = job.rounds
    assert rounds == 10
    base = task_config(job)
    pooled = combine([moments_from_weights(r.stats(base)) for r in runners.values()]).to_dict()
    weights = runners["card"].init(base)
    strategy = FedAvg()
    for round_no in range(1, rounds + 1):
        config = task_config(job, round_no=round_no, standardizer=pooled)
        aggregator = strategy.aggregator(weights, round_no)
        for dept, runner in runners.items():
            answer = runner.fit(config, weights)
            aggregator.add(Update(dept, answer.num_samples, answer.delta, answer.metrics))
        weights = aggregator.result()
    final = task_config(job, standardizer=pooled)
    for dept, runner in runners.items():
        federated = runner.evaluate(final, weights).metrics["roc_auc"]
        alone = local_baseline(runner, final, rounds)["roc_auc"]
        assert federated >= alone + 0.02, (dept, federated, alone)
