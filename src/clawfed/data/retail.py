"""Synthetic retail sales-forecast data: three departments, regions, monthly sales volumes.

Every department records monthly sales of product lines per region, each from its own
channel: 销售部 (sales) from its stores, 物流部 (logistics) from warehouse shipments,
市场部 (marketing) from its campaigns. One shared rule makes the volume (region, product
line, month of the year, promotion, price index, holiday days); each channel adds its own
level, which the shared model does not see, so its forecasts are biased differently per
department and region. That is what a regional comparison of forecast error shows.

The data cover the twelve months before ``RETAIL_REFERENCE_DATE``: asked on that date,
"上月" (last month) is ``RETAIL_LAST_MONTH``. Some departments record few rows in some
regions (市场部 in 华南: 6 a month, in 华北: 9) so that a federated query with the default
minimum group size of 10 suppresses them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pandas as pd

from clawfed.core.errors import ConfigError

#: Department id -> its name in the enterprise chat.
RETAIL_DEPARTMENTS: Mapping[str, str] = MappingProxyType(
    {"sales": "销售部", "logistics": "物流部", "marketing": "市场部"}
)
#: The day the scenario is "today": relative dates ("上月") are read against it.
RETAIL_REFERENCE_DATE = date(2026, 11, 16)
#: The month before the reference date, as written in the ``month`` column.
RETAIL_LAST_MONTH = "2026-10"
#: Months the data cover, oldest first (``YYYY-MM``).
RETAIL_MONTHS: tuple[str, ...] = tuple(
    f"{y}-{m:02d}" for y, m in [(2025, 11), (2025, 12)] + [(2026, m) for m in range(1, 11)]
)
REGIONS: tuple[str, ...] = ("华东", "华南", "华北", "华中", "西南", "西北", "东北")
PRODUCTS: tuple[str, ...] = ("食品", "饮料", "日化", "家电", "服装")
TARGET = "sales"
MONTH_COLUMN = "month"
REGION_COLUMN = "region"
#: The model's inputs, in encoding order.
RETAIL_FEATURES: tuple[str, ...] = (
    "region",
    "product",
    "month_of_year",
    "promo",
    "price_index",
    "holiday_days",
)

# The shared rule, in units sold per product line, region and month. Illustrative numbers.
_BASE = 900.0
_REGION_EFFECT = {"华东": 420.0, "华南": 300.0, "华北": 180.0, "华中": 60.0, "西南": -40.0,
                  "西北": -220.0, "东北": -160.0}  # fmt: skip
_PRODUCT_EFFECT = {"食品": 350.0, "饮料": 150.0, "日化": 0.0, "家电": -250.0, "服装": 80.0}
_SEASON = (120.0, 260.0, -40.0, -60.0, 0.0, 40.0, 90.0, 60.0, 20.0, 80.0, 160.0, 240.0)
_W_PROMO = 260.0
_W_PRICE = -900.0  # per unit of price index above 1
_W_HOLIDAY = 25.0  # per holiday day in the month
_NOISE = 60.0


@dataclass(frozen=True)
class _Channel:
    index: int
    level: float  # what this department's channel adds to the shared rule
    rows_per_month: Mapping[str, int]  # region -> rows recorded each month


_CHANNELS: Mapping[str, _Channel] = MappingProxyType(
    {
        "sales": _Channel(0, 60.0, {"华东": 30, "华南": 25, "华北": 20, "华中": 12, "西南": 10}),
        "logistics": _Channel(
            1, -90.0, {"华东": 15, "华南": 12, "华北": 25, "东北": 15, "西北": 10}
        ),
        "marketing": _Channel(2, 150.0, {"华东": 20, "华南": 6, "华北": 9, "西南": 12}),
    }
)


def retail_rows_per_month(dept: str) -> Mapping[str, int]:
    """How many rows department ``dept`` records per region each month."""
    return MappingProxyType(dict(_known(dept).rows_per_month))


def _known(dept: str) -> _Channel:
    channel = _CHANNELS.get(dept)
    if channel is None:
        raise ConfigError(f"unknown retail department {dept!r}; known: {list(_CHANNELS)}")
    return channel


def shared_sales(frame: pd.DataFrame) -> np.ndarray:
    """The shared rule's expected volume for each row of ``frame`` (without channel or noise)."""
    region = frame["region"].map(_REGION_EFFECT).to_numpy(dtype=np.float64)
    product = frame["product"].map(_PRODUCT_EFFECT).to_numpy(dtype=np.float64)
    season = np.asarray(_SEASON)[frame["month_of_year"].to_numpy(dtype=np.int64) - 1]
    return np.asarray(
        _BASE
        + region
        + product
        + season
        + _W_PROMO * frame["promo"].to_numpy(dtype=np.float64)
        + _W_PRICE * (frame["price_index"].to_numpy(dtype=np.float64) - 1.0)
        + _W_HOLIDAY * frame["holiday_days"].to_numpy(dtype=np.float64),
        dtype=np.float64,
    )


def retail_frame(seed: int, dept: str) -> pd.DataFrame:
    """One department's rows: month, region, product, month_of_year, promo, price, sales.

    Same seed and department, same rows.
    """
    channel = _known(dept)
    rng = np.random.default_rng([seed, 7919, channel.index])
    parts: list[dict[str, object]] = []
    for month in RETAIL_MONTHS:
        month_of_year = int(month[5:])
        holidays = {1: 3, 2: 7, 4: 1, 5: 3, 6: 1, 9: 1, 10: 7}.get(month_of_year, 0)
        for region, count in channel.rows_per_month.items():
            for _ in range(count):
                parts.append(
                    {
                        MONTH_COLUMN: month,
                        REGION_COLUMN: region,
                        "product": PRODUCTS[int(rng.integers(len(PRODUCTS)))],
                        "month_of_year": month_of_year,
                        "promo": int(rng.random() < 0.3),
                        "price_index": round(float(rng.normal(1.0, 0.08)), 3),
                        "holiday_days": holidays,
                    }
                )
    frame = pd.DataFrame(parts)
    expected = shared_sales(frame) + channel.level
    noisy = expected + rng.normal(0.0, _NOISE, size=len(frame))
    frame[TARGET] = np.round(np.maximum(noisy, 0.0), 1)
    return frame


def make_retail_scenario(seed: int, out_dir: Path | str) -> dict[str, Path]:
    """Write ``<dept>.csv`` for 销售部, 物流部 and 市场部 (ids sales, logistics, marketing).

    Parameters
    ----------
    seed
        Same seed, same files.
    out_dir
        Folder to write into (created if needed).

    Returns
    -------
    dict
        Department id -> path of its CSV file.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be an integer >= 0, got {seed!r}")
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for dept in _CHANNELS:
        path = folder / f"{dept}.csv"
        retail_frame(seed, dept).to_csv(path, index=False, encoding="utf-8")
        written[dept] = path
    return written
