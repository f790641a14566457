"""Synthetic bank anti-fraud data for three departments that differ the way real ones do."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TypeVar

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

# The retail sales-forecast scenario lives in its own module and is part of this catalogue.
from clawfed.data.retail import RETAIL_DEPARTMENTS as RETAIL_DEPARTMENTS
from clawfed.data.retail import RETAIL_REFERENCE_DATE as RETAIL_REFERENCE_DATE
from clawfed.data.retail import make_retail_scenario as make_retail_scenario
from clawfed.data.schema import ColumnType
from clawfed.data.sources import CsvSource

#: Department id -> its name in the enterprise chat: the bank's 信贷部 (credit), 信用卡中心
#: (card centre) and 消费金融部 (consumer finance).
FRAUD_DEPARTMENTS: Mapping[str, str] = MappingProxyType(
    {"credit": "信贷部", "card": "信用卡中心", "consumer": "消费金融部"}
)
TARGET = "is_fraud"

# The shared ground truth: log-odds of fraud in harmonized units. It is the same in every
# department (P(fraud | transaction) is shared); base rates differ because the departments
# see different kinds of transactions. No input decides alone: 30 merchant groups, 6 channels,
# 24 hours of the day and 31 provinces each shift the odds a little, on top of five moderate
# numeric effects. The numbers are illustrative, not statistics of any real bank or province.

#: Card spending in shops (信用卡中心's usual business): merchant group -> effect on the log-odds.
_CARD_SPENDING = {
    "grocery": -1.5, "supermarket": -1.2, "restaurant": -1.1, "fuel": -0.8, "apparel": 0.0,
    "electronics": 1.2, "home_goods": -0.3, "pharmacy": -1.0, "jewelry": 1.5, "luxury": 1.4,
}  # fmt: skip
#: Transfers, travel and service payments of borrowers (信贷部's usual business).
_SERVICES = {
    "money_transfer": 1.8, "travel": 0.6, "airline": 0.8, "hotel": 0.3, "car_rental": 0.8,
    "education": -0.5, "hospital": -1.3, "utilities": -2.0, "insurance": -0.8,
    "tax_payment": -1.2,
}  # fmt: skip
#: Online purchases paid by instalment loans (消费金融部's usual business).
_ONLINE = {
    "digital_goods": 1.3, "telecom_topup": 0.9, "online_gaming": 2.2, "lottery": 2.0,
    "crypto_exchange": 2.5, "gift_cards": 2.3, "cosmetics": 0.4, "sports": 0.0,
    "pet_supplies": -0.6, "food_delivery": 0.1,
}  # fmt: skip
#: Provinces by the part of the country where each department mostly works.
_NORTH = {
    "beijing": -0.5, "tianjin": -0.1, "hebei": 0.3, "shanxi": 0.5, "neimenggu": 0.4,
    "liaoning": -0.4, "jilin": -0.5, "heilongjiang": -0.3, "shandong": 0.0, "henan": 0.6,
}  # fmt: skip
_EAST_SOUTH = {
    "shanghai": -0.8, "jiangsu": -0.6, "zhejiang": -0.4, "anhui": 0.1, "fujian": 0.9,
    "jiangxi": 0.8, "guangdong": 0.5, "guangxi": 1.2, "hainan": 1.0,
}  # fmt: skip
_CENTRE_WEST = {
    "hubei": 0.3, "hunan": 0.4, "chongqing": 0.0, "sichuan": 0.4, "guizhou": 0.8,
    "yunnan": 1.3, "xizang": 0.3, "shaanxi": 0.1, "gansu": 0.6, "qinghai": 0.3,
    "ningxia": -0.1, "xinjiang": 0.5,
}  # fmt: skip
_MERCHANT_EFFECT: Mapping[str, float] = MappingProxyType({**_CARD_SPENDING, **_SERVICES, **_ONLINE})
_REGION_EFFECT: Mapping[str, float] = MappingProxyType({**_NORTH, **_EAST_SOUTH, **_CENTRE_WEST})
_CHANNEL_EFFECT: Mapping[str, float] = MappingProxyType(
    {"branch": -1.3, "atm": 0.4, "pos": -0.6, "app": 0.0, "web": 0.9, "phone": 1.3}
)
#: Log-odds by hour of day (0..23): high at night, and every hour a little different by day.
_HOUR_EFFECT = (
    1.6, 1.8, 2.0, 1.7, 1.3, 0.8, 0.1, -0.3, -0.5, -0.8, -0.6, -0.4,
    0.0, -0.5, -0.8, -0.3, 0.1, 0.4, -0.1, 0.3, 0.6, 0.4, 0.9, 1.2,
)  # fmt: skip
_INTERCEPT = -5.6
_W_AMOUNT_K = 0.15  # per 1000 yuan
_W_AGE_YEARS = -0.18
_W_DISPUTES = 0.35
_W_RISK = 1.75
_W_FOREIGN = 0.55

MERCHANTS = tuple(_MERCHANT_EFFECT)
CHANNELS = tuple(_CHANNEL_EFFECT)
HOURS = tuple(str(h) for h in range(24))
REGIONS = tuple(_REGION_EFFECT)

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
#: Department sizes with about 50 to 65 frauds each (credit ~1.1 %, card ~1.9 %,
#: consumer ~6 %): too few to learn the shared rule alone, enough to learn it together.
DEFAULT_FRAUD_ROWS: Mapping[str, int] = MappingProxyType(
    {"credit": 6000, "card": 3500, "consumer": 800}
)

_V = TypeVar("_V")
_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华"


def _no_mapping() -> Mapping[str, _V]:
    return MappingProxyType({})


@dataclass(frozen=True)
class _Department:
    """How one department's transactions look before harmonization.

    ``merchants``, ``channels`` and ``regions`` give relative frequencies of the categories
    the department sees more or less often than the others (1 for any not listed).
    """

    index: int  # picks the department's own random stream
    amount_mu: float
    amount_sigma: float
    night_share: float  # share of transactions between 00:00 and 05:59 (0: none)
    day_hours: tuple[int, int]
    merchants: Mapping[str, float]
    channels: Mapping[str, float]
    regions: Mapping[str, float]
    foreign_rate: float
    new_account_days: float  # mean of an exponential account age (days); 0: uniform instead
    account_days: tuple[int, int]  # range (days) of the uniform account age
    dispute_rate: float
    risk_beta: tuple[float, float]
    risk_points: int
    missing: Mapping[str, float]  # shared name -> share of missing cells
    local_names: Mapping[str, str] = field(default_factory=_no_mapping)  # shared -> own name
    sentinel_missing: Mapping[str, int] = field(default_factory=_no_mapping)  # marker of a gap
    foreign_as_text: bool = False


#: How much more often a department sees the categories of its usual business than the rest.
_CORE_WEIGHT = 4.0


def _core(*names: str) -> Mapping[str, float]:
    """Relative frequencies: ``names`` (a department's usual business) at ``_CORE_WEIGHT``."""
    return MappingProxyType(dict.fromkeys(names, _CORE_WEIGHT))


def _mix(**weights: float) -> Mapping[str, float]:
    """Relative frequencies given one by one."""
    return MappingProxyType(weights)


_DEPARTMENTS: Mapping[str, _Department] = MappingProxyType(
    {
        # 信贷部: transfers, travel and service payments of screened, long-standing borrowers
        # on the east and south coast, so few confirmed frauds; its own column names, a
        # 10-point risk score, -1 for an unknown dispute count, some risk scores missing.
        "credit": _Department(
            index=1,
            amount_mu=6.6,
            amount_sigma=1.0,
            night_share=0.05,
            day_hours=(7, 23),
            merchants=_core(*_SERVICES),
            channels=_mix(branch=5, web=2, app=2, atm=0.3, pos=0.3),
            regions=_core(*_EAST_SOUTH),
            foreign_rate=0.08,
            new_account_days=0.0,
            account_days=(730, 3650),
            dispute_rate=0.08,
            risk_beta=(1.5, 8.0),
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
        ),
        # 信用卡中心: card spending of established cardholders in shops of its northern
        # network, some of it at night; 5-point risk rating, some account ages missing.
        "card": _Department(
            index=0,
            amount_mu=7.0,
            amount_sigma=0.9,
            night_share=0.08,
            day_hours=(7, 23),
            merchants=_core(*_CARD_SPENDING),
            channels=_mix(pos=4, branch=2, atm=2, app=2),
            regions=_core(*_NORTH),
            foreign_rate=0.02,
            new_account_days=0.0,
            account_days=(30, 3650),
            dispute_rate=0.25,
            risk_beta=(2.0, 3.0),
            risk_points=5,
            missing=MappingProxyType({"account_age_days": 0.08}),
        ),
        # 消费金融部: online purchases on instalment loans in the centre and west (young
        # accounts, many disputes, high fraud rate), approved in office hours only;
        # cross-border as Y/N, some hours and merchant groups missing.
        "consumer": _Department(
            index=2,
            amount_mu=7.4,
            amount_sigma=0.9,
            night_share=0.0,
            day_hours=(8, 19),
            merchants=_core(*_ONLINE),
            channels=_mix(app=3, web=3, phone=2, branch=0.5, pos=0.5, atm=0.5),
            regions=_core(*_CENTRE_WEST),
            foreign_rate=0.08,
            new_account_days=1500.0,
            account_days=(1, 3650),
            dispute_rate=0.4,
            risk_beta=(2.0, 3.0),
            risk_points=5,
            local_names=MappingProxyType({"risk_rating": "risk_level"}),
            missing=MappingProxyType({"hour": 0.12, "merchant_category": 0.05}),
            foreign_as_text=True,
        ),
    }
)


def make_fraud_scenario(
    seed: int, rows_per_dept: Mapping[str, int], out_dir: Path | str
) -> dict[str, Path]:
    """Write one CSV per department with a shared fraud rule but department-specific data.

    Fraud follows one logistic rule everywhere (``P(fraud | transaction)`` is shared):
    additive log-odds of 30 merchant groups, 6 channels, 24 hours and 31 provinces, each with
    its own moderate effect, plus amount, account age, prior disputes, risk rating and a
    cross-border flag: about 100 encoded features, none of which gives fraud away alone. Every
    department records the same features; each has only tens of labelled frauds (50 to 65
    with ``DEFAULT_FRAUD_ROWS``) and mostly sees its own business, so the departments differ
    in:

    - customers: 信贷部 (credit) sees transfers, travel and service payments of screened,
      long-standing borrowers on the east and south coast; 信用卡中心 (card) card spending in
      shops of the north, a quarter of its frauds at night; 消费金融部 (consumer) online
      purchases on instalment loans of young accounts in the centre and west, in office
      hours only. Each sees the merchant groups and provinces of its business four times as
      often as the rest, so a third of its rows (for credit and card, half of their frauds)
      fall in groups where it has few labelled examples and another department has many;
    - fraud patterns: credit's frauds are mostly transfers and travel over web and phone,
      card's jewellery, luxury and electronics at the till, consumer's crypto exchanges, gift
      cards and online games;
    - fraud rates (about credit 1.1 %, card 1.9 %, consumer 6 %);
    - column names (credit uses its own) and encodings (consumer writes cross-border as Y/N);
    - risk scale: credit rates risk 1-10, card and consumer 1-5;
    - missing data: credit writes -1 for an unknown dispute count and lacks some risk scores,
      card lacks some account ages, consumer lacks some hours and merchant groups.

    Alone, a department cannot estimate a hundred weights from its few frauds; together the
    three have three times as many, over all categories. So a model trained on all three
    ranks each department's holdout better than the department's own model: with
    ``DEFAULT_FRAUD_ROWS`` and ``examples/fraud-job.yaml`` (10 rounds of FedAvg, half of
    each department's rows held out) by about 0.05 ROC-AUC per department on average over
    seeds; single seeds vary (a holdout has only 25 to 30 frauds).

    Beside each ``<dept>.csv`` it writes ``<dept>.harmonization.yaml`` (renames, missing
    markers, scales to [0, 1], imputation with indicators) and ``<dept>.dataset.yaml`` (the
    shared ``DatasetSpec``). A ``customer_name`` column holds fake personal names; it is not
    a feature.

    Parameters
    ----------
    seed
        Same seed, same files (each department's rows depend only on the seed and its id).
    rows_per_dept
        Rows to write per department id (``credit``, ``card``, ``consumer``; any subset).
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
    categories = {"hour": HOURS, "merchant_category": MERCHANTS, "channel": CHANNELS}
    categories["region"] = REGIONS
    numeric = ("amount", "account_age_days", "prior_disputes", "risk_rating")
    binary = ("is_foreign", *(f"{c}__missing" for c in IMPUTED))
    kinds = (
        dict.fromkeys(numeric, ColumnType.NUMERIC)
        | dict.fromkeys(categories, ColumnType.CATEGORICAL)
        | dict.fromkeys(binary, ColumnType.BINARY)
    )
    types = {name: kinds[name] for name in FRAUD_FEATURES}
    return DatasetSpec(
        name=f"fraud-{dept}",
        source=CsvSource(path=Path(csv_path)),
        target=TARGET,
        features=FRAUD_FEATURES,
        types=types,
        categories=categories,
        task=Task.BINARY,
    )


def fraud_harmonization(dept: str) -> Harmonization:
    """The mapping that turns department ``dept``'s CSV into the shared schema."""
    profile = _known(dept)
    impute = {c: ImputeRule(strategy=ImputeStrategy.MEDIAN, indicator=True) for c in IMPUTED}
    impute["hour"] = ImputeRule(strategy=ImputeStrategy.MODE, indicator=True)
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
        age = rng.uniform(*profile.account_days, rows)
    age = np.round(age)
    disputes = rng.poisson(profile.dispute_rate, rows)
    points = profile.risk_points
    rating = 1 + np.round(rng.beta(*profile.risk_beta, rows) * (points - 1))
    risk = (rating - 1) / (points - 1)
    foreign = (rng.random(rows) < profile.foreign_rate).astype(np.int64)
    merchant = rng.choice(MERCHANTS, rows, p=_shares(MERCHANTS, profile.merchants))
    channel = rng.choice(CHANNELS, rows, p=_shares(CHANNELS, profile.channels))
    region = rng.choice(REGIONS, rows, p=_shares(REGIONS, profile.regions))
    logit = (
        _W_AMOUNT_K * amount / 1000.0
        + np.asarray(_HOUR_EFFECT)[hour]
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


def _shares(options: Sequence[str], weights: Mapping[str, float]) -> npt.NDArray[np.float64]:
    """Probabilities of ``options``: their ``weights`` (1 if not listed), normalized."""
    w = np.array([weights.get(o, 1.0) for o in options], dtype=np.float64)
    out: npt.NDArray[np.float64] = w / w.sum()
    return out


def _sigmoid(z: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    out: npt.NDArray[np.float64] = 1.0 / (1.0 + np.exp(-z))
    return out
