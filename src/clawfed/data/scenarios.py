"""Synthetic bank anti-fraud data for three departments that differ the way real ones do."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np
import numpy.typing as npt
import pandas as pd
import yaml

from clawfed.core.errors import ConfigError
from clawfed.data.dataset import DatasetSpec
from clawfed.data.encode import Task
from clawfed.data.harmonize import (
    Harmonization,
    ImputeRule,
    ImputeStrategy,
    ScaleRule,
    save_harmonization,
)
from clawfed.data.schema import ColumnType
from clawfed.data.sources import CsvSource

#: Department id -> its name in the enterprise chat.
FRAUD_DEPARTMENTS: Mapping[str, str] = MappingProxyType(
    {"credit": "信贷部", "compliance": "合规部", "audit": "审计部"}
)
MERCHANTS = (
    "grocery",
    "restaurant",
    "utilities",
    "travel",
    "electronics",
    "jewelry",
    "online_gaming",
    "crypto_exchange",
)
CHANNELS = ("app", "web", "branch")
REGIONS = ("north", "northeast", "east", "south", "central", "west")
TARGET = "is_fraud"
#: Imputed columns; each also gets a ``<col>__missing`` indicator feature.
IMPUTED = ("hour", "account_age_days", "prior_disputes", "risk_rating")
FRAUD_FEATURES = (
    "amount",
    "hour",
    "account_age_days",
    "prior_disputes",
    "risk_rating",
    "is_foreign",
    "merchant_category",
    "channel",
    "region",
    *(f"{c}__missing" for c in IMPUTED),
)
MIN_ROWS = 20
#: Department sizes at which pooling clearly pays off for every department.
DEFAULT_FRAUD_ROWS: Mapping[str, int] = MappingProxyType(
    {"credit": 1500, "compliance": 4000, "audit": 600}
)

# The shared ground truth: log-odds of fraud in harmonized units. It is the same in every
# department (P(fraud | transaction) is shared); base rates differ because the departments
# see different kinds of transactions.
_INTERCEPT = -7.5
_W_AMOUNT_K = 0.4  # per 1000 yuan
_W_HOUR = 1.5  # from 00:00 (0) to 23:00 (1)
_W_AGE_YEARS = -0.3
_W_DISPUTES = 1.0
_W_RISK = 4.0
_W_FOREIGN = 1.5
_MERCHANT_EFFECT = dict(zip(MERCHANTS, (-1.5, -1.0, -2.0, 0.3, 1.0, 1.5, 2.0, 2.8), strict=True))
_CHANNEL_EFFECT = {"app": 0.0, "web": 0.3, "branch": -0.6}
_REGION_EFFECT = dict(zip(REGIONS, (-0.5, 1.5, -0.8, 0.4, 0.0, 2.0), strict=True))

_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华"


@dataclass(frozen=True)
class _Department:
    """How one department's transactions look before harmonization."""

    index: int
    amount_mu: float
    amount_sigma: float
    night_share: float  # share of transactions between 00:00 and 05:59 (0: none)
    day_hours: tuple[int, int]
    merchant_weights: tuple[float, ...]
    channel_weights: tuple[float, ...]
    region_weights: tuple[float, ...]
    foreign_rate: float
    new_account_days: float  # mean account age (days) of an exponential; 0 = uniform 30..3650
    dispute_rate: float
    risk_beta: tuple[float, float]
    risk_points: int
    local_names: Mapping[str, str]  # shared name -> the department's own column name
    missing: Mapping[str, float]  # shared name -> share of missing cells
    sentinel_missing: Mapping[str, int]  # shared name -> marker written for a missing cell
    foreign_as_text: bool


_DEPARTMENTS: Mapping[str, _Department] = MappingProxyType(
    {
        # 信贷部: loan-linked payments of established customers, mostly domestic, 5-point risk.
        "credit": _Department(
            index=0,
            amount_mu=7.4,
            amount_sigma=1.0,
            night_share=0.1,
            day_hours=(7, 23),
            merchant_weights=(0.2, 0.16, 0.16, 0.16, 0.16, 0.12, 0.02, 0.02),
            channel_weights=(0.45, 0.25, 0.3),
            region_weights=(0.4, 0.02, 0.3, 0.02, 0.24, 0.02),
            foreign_rate=0.02,
            new_account_days=0.0,
            dispute_rate=0.25,
            risk_beta=(2.0, 4.0),
            risk_points=5,
            local_names=MappingProxyType({}),
            missing=MappingProxyType({"account_age_days": 0.08}),
            sentinel_missing=MappingProxyType({}),
            foreign_as_text=False,
        ),
        # 合规部: screened, low-risk customers, so very few confirmed frauds; its own column
        # names, a 10-point risk score, -1 for an unknown dispute count.
        "compliance": _Department(
            index=1,
            amount_mu=6.4,
            amount_sigma=1.1,
            night_share=0.05,
            day_hours=(7, 23),
            merchant_weights=(0.28, 0.2, 0.18, 0.12, 0.12, 0.06, 0.02, 0.02),
            channel_weights=(0.4, 0.2, 0.4),
            region_weights=(0.08, 0.02, 0.4, 0.4, 0.08, 0.02),
            foreign_rate=0.05,
            new_account_days=0.0,
            dispute_rate=0.15,
            risk_beta=(2.0, 5.0),
            risk_points=10,
            local_names=MappingProxyType(
                {
                    "amount": "txn_amount",
                    "hour": "txn_hour",
                    "merchant_category": "mcc_group",
                    "prior_disputes": "dispute_count",
                    "risk_rating": "risk_score",
                    "is_foreign": "cross_border",
                    TARGET: "fraud_flag",
                }
            ),
            missing=MappingProxyType({"risk_rating": 0.06, "prior_disputes": 0.1}),
            sentinel_missing=MappingProxyType({"prior_disputes": -1}),
            foreign_as_text=False,
        ),
        # 审计部: transactions pulled for review (young accounts, many disputes, high fraud
        # rate), office hours only, hardly any gaming, crypto, east or south transactions.
        "audit": _Department(
            index=2,
            amount_mu=7.6,
            amount_sigma=0.9,
            night_share=0.0,
            day_hours=(8, 19),
            merchant_weights=(0.2, 0.15, 0.15, 0.2, 0.18, 0.08, 0.02, 0.02),
            channel_weights=(0.3, 0.5, 0.2),
            region_weights=(0.1, 0.2, 0.02, 0.02, 0.64, 0.02),
            foreign_rate=0.15,
            new_account_days=700.0,
            dispute_rate=0.6,
            risk_beta=(3.0, 3.0),
            risk_points=5,
            local_names=MappingProxyType({"risk_rating": "risk_level"}),
            missing=MappingProxyType({"hour": 0.12, "merchant_category": 0.05}),
            sentinel_missing=MappingProxyType({}),
            foreign_as_text=True,
        ),
    }
)


def make_fraud_scenario(
    seed: int, rows_per_dept: Mapping[str, int], out_dir: Path | str
) -> dict[str, Path]:
    """Write one CSV per department with a shared fraud rule but department-specific data.

    Fraud follows one logistic rule everywhere (``P(fraud | transaction)`` is shared), linear
    in the harmonized amount, hour, account age, prior disputes, risk rating, cross-border
    flag, merchant category, channel and region. The departments differ in:

    - the transactions they see, and so their fraud rates (about credit 2.3 %, compliance
      1 %, audit 14 %): non-IID features and labels;
    - column names (compliance uses its own) and encodings (audit writes cross-border as Y/N);
    - risk scale: credit and audit rate risk 1-5, compliance 1-10;
    - missing data: credit lacks some account ages, compliance writes -1 for an unknown
      dispute count and lacks some risk scores, audit lacks some hours and merchant
      categories;
    - coverage: compliance has very few frauds; credit almost never sees gaming, crypto,
      cross-border or north-east / west / south transactions; audit works office hours
      only and almost never sees gaming, crypto, east or south transactions. Each
      department's rare regions are common elsewhere, so with ``DEFAULT_FRAUD_ROWS`` a
      model trained on all three ranks each department's holdout better than the
      department's own model does.

    Beside each ``<dept>.csv`` it writes ``<dept>.harmonization.yaml`` (renames, missing
    markers, scales to [0, 1], imputation with indicators) and ``<dept>.dataset.yaml`` (the
    shared ``DatasetSpec``). A ``customer_name`` column holds fake personal names; it is not
    a feature.

    Parameters
    ----------
    seed
        Same seed, same files (each department's rows depend only on the seed and its id).
    rows_per_dept
        Rows to write per department id (``credit``, ``compliance``, ``audit``; any subset).
    out_dir
        Folder to write into (created if needed).

    Returns
    -------
    dict
        Department id -> path of its CSV file.
    """
    if not rows_per_dept:
        raise ConfigError("rows_per_dept must name at least one department")
    unknown = sorted(set(rows_per_dept) - set(_DEPARTMENTS))
    if unknown:
        raise ConfigError(
            f"rows_per_dept names unknown department(s) {unknown}; known: {list(_DEPARTMENTS)}"
        )
    for dept, rows in rows_per_dept.items():
        if isinstance(rows, bool) or not isinstance(rows, int) or rows < MIN_ROWS:
            raise ConfigError(
                f"rows_per_dept[{dept!r}] must be an integer >= {MIN_ROWS}, got {rows!r}"
            )
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for dept, rows in rows_per_dept.items():
        profile = _DEPARTMENTS[dept]
        rng = np.random.default_rng([seed, profile.index])
        frame = _local_frame(_draw(profile, rows, rng), profile, rng, dept)
        csv = folder / f"{dept}.csv"
        frame.to_csv(csv, index=False, encoding="utf-8")
        header = f"harmonization of {FRAUD_DEPARTMENTS[dept]} ({dept}) onto the shared fraud schema"
        save_harmonization(
            fraud_harmonization(dept), folder / f"{dept}.harmonization.yaml", header=header
        )
        spec = fraud_spec(dept, Path(csv.name))
        (folder / f"{dept}.dataset.yaml").write_text(
            yaml.safe_dump(
                spec.model_dump(mode="json", exclude_none=True), allow_unicode=True, sort_keys=False
            ),
            encoding="utf-8",
        )
        written[dept] = csv
    return written


def fraud_spec(dept: str, csv_path: Path | str) -> DatasetSpec:
    """The shared ``DatasetSpec`` of the fraud job for department ``dept`` reading ``csv_path``."""
    _known(dept)
    types = {
        "amount": ColumnType.NUMERIC,
        "hour": ColumnType.NUMERIC,
        "account_age_days": ColumnType.NUMERIC,
        "prior_disputes": ColumnType.NUMERIC,
        "risk_rating": ColumnType.NUMERIC,
        "is_foreign": ColumnType.BINARY,
        "merchant_category": ColumnType.CATEGORICAL,
        "channel": ColumnType.CATEGORICAL,
        "region": ColumnType.CATEGORICAL,
    } | {f"{c}__missing": ColumnType.BINARY for c in IMPUTED}
    return DatasetSpec(
        name=f"fraud-{dept}",
        source=CsvSource(path=Path(csv_path)),
        target=TARGET,
        features=FRAUD_FEATURES,
        types=types,
        categories={"merchant_category": MERCHANTS, "channel": CHANNELS, "region": REGIONS},
        task=Task.BINARY,
    )


def fraud_harmonization(dept: str) -> Harmonization:
    """The mapping that turns department ``dept``'s CSV into the shared schema."""
    profile = _known(dept)
    impute = {c: ImputeRule(strategy=ImputeStrategy.MEDIAN, indicator=True) for c in IMPUTED}
    impute["merchant_category"] = ImputeRule(strategy=ImputeStrategy.MODE)
    scale = ScaleRule.model_validate({"from": (1.0, float(profile.risk_points)), "to": (0.0, 1.0)})
    return Harmonization(
        renames={local: shared for shared, local in profile.local_names.items()},
        missing_values={c: (marker,) for c, marker in profile.sentinel_missing.items()},
        scales={"risk_rating": scale},
        impute=impute,
    )


def _known(dept: str) -> _Department:
    try:
        return _DEPARTMENTS[dept]
    except KeyError:
        raise ConfigError(f"unknown department {dept!r}; known: {list(_DEPARTMENTS)}") from None


def _draw(profile: _Department, rows: int, rng: np.random.Generator) -> pd.DataFrame:
    """Rows in shared names and units (risk in [0, 1]) with their fraud labels."""
    amount = np.round(np.exp(rng.normal(profile.amount_mu, profile.amount_sigma, rows)), 2)
    low, high = profile.day_hours
    hour = rng.integers(low, high, rows)
    if profile.night_share > 0:
        night = rng.random(rows) < profile.night_share
        hour = np.where(night, rng.integers(0, 6, rows), hour)
    if profile.new_account_days > 0:
        age = np.minimum(rng.exponential(profile.new_account_days, rows) + 1, 3650)
    else:
        age = rng.uniform(30, 3650, rows)
    age = np.round(age)
    disputes = rng.poisson(profile.dispute_rate, rows)
    points = profile.risk_points
    rating = 1 + np.round(rng.beta(*profile.risk_beta, rows) * (points - 1))
    risk = (rating - 1) / (points - 1)
    foreign = (rng.random(rows) < profile.foreign_rate).astype(np.int64)
    merchant = rng.choice(MERCHANTS, rows, p=_normalized(profile.merchant_weights))
    channel = rng.choice(CHANNELS, rows, p=_normalized(profile.channel_weights))
    region = rng.choice(REGIONS, rows, p=_normalized(profile.region_weights))
    logit = (
        _W_AMOUNT_K * amount / 1000.0
        + _W_HOUR * hour / 23.0
        + _W_AGE_YEARS * age / 365.0
        + _W_DISPUTES * disputes
        + _W_RISK * risk
        + _W_FOREIGN * foreign
        + np.array([_MERCHANT_EFFECT[m] for m in merchant])
        + np.array([_CHANNEL_EFFECT[c] for c in channel])
        + np.array([_REGION_EFFECT[r] for r in region])
    )
    fraud = (rng.random(rows) < _sigmoid(_INTERCEPT + logit)).astype(np.int64)
    return pd.DataFrame(
        {
            "amount": amount,
            "hour": hour,
            "merchant_category": merchant,
            "account_age_days": age.astype(np.int64),
            "prior_disputes": disputes,
            "risk_rating": rating.astype(np.int64),
            "is_foreign": foreign,
            "channel": channel,
            "region": region,
            TARGET: fraud,
        }
    )


def _local_frame(
    shared: pd.DataFrame, profile: _Department, rng: np.random.Generator, dept: str
) -> pd.DataFrame:
    """The rows as the department stores them: own names, encodings and gaps, plus PII."""
    rows = len(shared)
    out = shared.copy()
    for col, share in profile.missing.items():
        gone = rng.random(rows) < share
        marker = profile.sentinel_missing.get(col)
        out[col] = out[col].astype(object).where(~gone, marker)
    if profile.foreign_as_text:
        out["is_foreign"] = np.where(out["is_foreign"] == 1, "Y", "N")
    surname = rng.choice(list(_SURNAMES), rows)
    given = rng.choice(list(_GIVEN), (rows, 2))
    names = [s + g[0] + g[1] for s, g in zip(surname, given, strict=True)]
    out.insert(0, "customer_name", names)
    out.insert(0, "txn_id", [f"{dept[:2].upper()}-{i:06d}" for i in range(rows)])
    return out.rename(columns=dict(profile.local_names))


def _normalized(weights: tuple[float, ...]) -> npt.NDArray[np.float64]:
    w = np.asarray(weights, dtype=np.float64)
    out: npt.NDArray[np.float64] = w / w.sum()
    return out


def _sigmoid(z: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    out: npt.NDArray[np.float64] = 1.0 / (1.0 + np.exp(-z))
    return out
