"""Shared values of the node tests: the small fraud scenario's size and encoded width."""

from __future__ import annotations

from pathlib import Path

from clawfed.data import ColumnType
from clawfed.data.scenarios import fraud_spec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

#: Rows per department of the small scenario (seed 3).
ROWS = {"card": 400, "credit": 1200, "consumer": 200}
#: Share of each department's rows the example fraud job holds out.
HOLDOUT = 0.5


def encoded_width() -> int:
    """Columns of the fraud features once encoded (a one-hot column per category)."""
    spec = fraud_spec("card", "card.csv")
    kinds = spec.declared_types()
    return sum(
        len(spec.categories[f]) if kinds.get(f) is ColumnType.CATEGORICAL else 1
        for f in spec.features
    )
