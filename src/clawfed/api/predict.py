"""The model service: a version's weights and the job's model applied to posted feature rows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from clawfed.coordinator.jobspec import JobSpec
from clawfed.coordinator.ledger import SqlLedger
from clawfed.coordinator.model_spec import NOOP_MODEL
from clawfed.core import ConfigError, DataError, Weights
from clawfed.governance.db import Database
from clawfed.governance.registry import ModelVersion

Cell = str | int | float | bool | None


def _features(spec: JobSpec, rows: Sequence[Mapping[str, Cell]]) -> np.ndarray:
    """The rows encoded the way the nodes encode them (column types and category layout)."""
    import pandas as pd

    from clawfed.data import ColumnType
    from clawfed.data.encode import encode_features, resolve_categories, resolve_types

    assert spec.data is not None
    wanted = list(spec.data.features)
    for i, row in enumerate(rows):
        missing = [c for c in wanted if c not in row]
        if missing:
            raise ConfigError(
                f"row {i} lacks feature(s) {', '.join(missing)}; job {spec.name} needs "
                f"{', '.join(wanted)}"
            )
    frame = pd.DataFrame([{c: row[c] for c in wanted} for row in rows], columns=wanted)
    declared = {c: ColumnType(k) for c, k in spec.data.declared_types().items()}
    types = resolve_types(frame, wanted, declared)
    categories = resolve_categories(frame, types, spec.data.categories)
    matrix, _names = encode_features(frame, types, categories, f"{spec.name} request")
    return matrix


def predict(
    db: Database, artifacts_root: Path, spec: JobSpec, version: ModelVersion,
    weights: Weights, rows: Sequence[Mapping[str, Cell]],
) -> list[list[float]]:  # fmt: skip
    """Scores of ``rows``: the positive class's probability, or one per class.

    Raises
    ------
    ConfigError
        When the job has no model to serve (``noop``) or a row lacks a feature.
    DataError
        When a cell cannot be encoded, or the rows do not fit the model's input width.
    """
    if spec.model.name == NOOP_MODEL or spec.data is None:
        raise ConfigError(f"job {spec.name} uses the '{NOOP_MODEL}' model: it has no predictions")
    import torch

    from clawfed.data.standardize import Standardizer
    from clawfed.learning.models import model_from_spec

    x = _features(spec, rows)
    prep = SqlLedger(db, artifacts_root).progress(version.job_id).prep
    moments = prep.get("standardizer") if spec.data.standardize else None
    if isinstance(moments, Mapping):
        x = np.asarray(
            Standardizer(np.asarray(moments["mean"]), np.asarray(moments["std"])).transform(x),
            dtype=np.float32,
        )
    section: dict[str, object] = dict(spec.model.settings)
    if spec.model.name is not None:
        section["name"] = spec.model.name
    else:
        section["custom"] = str(spec.model.custom)
    model = model_from_spec(section, x.shape[1], seed=0)
    state = {k: torch.from_numpy(np.array(v, copy=True)) for k, v in weights.items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise DataError(
            f"version {version.version_id} does not fit job {spec.name}'s model with "
            f"{x.shape[1]} encoded feature(s): {str(exc)[:300]}"
        ) from exc
    model.eval()
    with torch.no_grad():
        out = model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
    scores = torch.sigmoid(out) if out.ndim == 1 or out.shape[-1] == 1 else out.softmax(-1)
    return [[float(v) for v in np.atleast_1d(r)] for r in scores.reshape(len(rows), -1).numpy()]
