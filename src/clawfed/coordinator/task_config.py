"""The per-task config built from a job spec: the flat scalar keys every task carries.

``task_config`` turns a ``JobSpec`` into the flat scalar config every task carries to the
nodes, and is the only place that defines its keys (``TaskKey`` lists them)::

    key                     type   meaning
    model.name              str    built-in model (``BUILTIN_MODELS``) or ``noop``
    model.custom            str    ``package.module:ClassName`` (instead of ``model.name``)
    model.settings          str    JSON object of the model's settings (``{"hidden": [32]}``)
    dataset                 str    name of the dataset each node offers for this job
    purpose                 str    what the job uses the data for (nodes check it against
                                   their local policy); absent when the job names none
    data.target             str    target column (shared name, after harmonization)
    data.features           str    JSON list of feature columns, in encoding order
    data.types              str    JSON object column -> numeric | categorical | binary
    data.categories         str    JSON object column -> list of categories (one-hot layout)
    data.holdout_fraction   float  share of each node's rows held out for evaluation
    data.standardize        bool   whether features are standardized with federated moments
    data.standardizer       str    JSON {"mean": [...], "std": [...]}: pooled moments, sent
                                   once the STATS phase ran (only when data.standardize)
    train.epochs … train.seed      the ``FitConfig`` fields (all of them, defaults filled in)
    round                   int    round number of a fit task (varies the batch order)
    proximal_mu             float  FedProx's μ, added per round by the ``fedprox`` strategy
    compression.codec       str    ``fp16``, ``int8`` or ``topk``: how the node encodes its update
    compression.topk_ratio  float  share of each tensor's entries ``topk`` sends
    compression.error_feedback bool whether the node keeps what a lossy codec dropped
                                   (the three are absent when the job does not compress)

``data.*`` keys (and ``dataset``) are absent when the job has no ``data`` section (``noop``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import fields
from enum import StrEnum
from typing import Any

from clawfed.coordinator.jobspec import TRAIN_KEYS, JobSpec
from clawfed.coordinator.model_spec import Scalar
from clawfed.core import ConfigError
from clawfed.learning.trainer import FitConfig
from clawfed.wire.codecs import CODEC_KEY, ERROR_FEEDBACK_KEY, TOPK_RATIO_KEY, CodecName

#: Prefix of the ``train.<field>`` keys.
TRAIN_PREFIX = "train."


class TaskKey(StrEnum):
    """The keys of a task's config (see the module docstring for their types)."""

    MODEL_NAME = "model.name"
    MODEL_CUSTOM = "model.custom"
    MODEL_SETTINGS = "model.settings"
    DATASET = "dataset"
    PURPOSE = "purpose"
    TARGET = "data.target"
    FEATURES = "data.features"
    TYPES = "data.types"
    CATEGORIES = "data.categories"
    HOLDOUT_FRACTION = "data.holdout_fraction"
    STANDARDIZE = "data.standardize"
    STANDARDIZER = "data.standardizer"
    ROUND = "round"
    PROXIMAL_MU = "proximal_mu"


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def task_config(
    spec: JobSpec,
    *,
    round_no: int | None = None,
    standardizer: Mapping[str, Sequence[float]] | None = None,
) -> dict[str, Scalar]:
    """The flat config a task of this job carries (keys in the module docstring).

    Parameters
    ----------
    spec
        The job.
    round_no
        Sent as ``round`` (fit tasks; the nodes vary their batch order with it).
    standardizer
        The pooled ``{"mean": [...], "std": [...]}`` (``Standardizer.to_dict()``) once the
        STATS phase ran; only for jobs with ``data.standardize``.

    Returns
    -------
    dict
        Key -> scalar; merge a strategy's per-node settings (``proximal_mu``) on top.

    Raises
    ------
    ConfigError
        When a standardizer is given for a job that does not standardize, or is malformed.
    """
    out: dict[str, Scalar] = {}
    if spec.model.name is not None:
        out[TaskKey.MODEL_NAME] = spec.model.name
    else:
        out[TaskKey.MODEL_CUSTOM] = str(spec.model.custom)
    out[TaskKey.MODEL_SETTINGS] = _dumps(spec.model.settings)
    if spec.dataset is not None:
        out[TaskKey.DATASET] = spec.dataset
    if spec.purpose is not None:
        out[TaskKey.PURPOSE] = spec.purpose
    data = spec.data
    if data is not None:
        out[TaskKey.TARGET] = data.target
        out[TaskKey.FEATURES] = _dumps(list(data.features))
        out[TaskKey.TYPES] = _dumps(data.types)
        out[TaskKey.CATEGORIES] = _dumps({c: list(v) for c, v in data.categories.items()})
        out[TaskKey.HOLDOUT_FRACTION] = data.holdout_fraction
        out[TaskKey.STANDARDIZE] = data.standardize
    for f in fields(FitConfig):
        if f.name in TRAIN_KEYS:
            value: Any = getattr(spec.fit_config(), f.name)
            out[TRAIN_PREFIX + f.name] = str(value) if isinstance(value, StrEnum) else value
    if round_no is not None:
        if isinstance(round_no, bool) or not isinstance(round_no, int) or round_no < 0:
            raise ConfigError(f"round_no must be an integer >= 0, got {round_no!r}")
        out[TaskKey.ROUND] = round_no
    if standardizer is not None:
        out[TaskKey.STANDARDIZER] = _standardizer_json(spec, standardizer)
    if spec.privacy is not None and spec.privacy.dp_sgd is not None:  # dpsgd.* keys
        out.update(spec.privacy.dp_sgd.task_config(spec.rounds))
    if spec.compression is not None and spec.compression.codec is not CodecName.NONE:
        out[CODEC_KEY] = str(spec.compression.codec)
        out[TOPK_RATIO_KEY] = spec.compression.topk_ratio
        out[ERROR_FEEDBACK_KEY] = spec.compression.error_feedback
    return {str(k): v for k, v in out.items()}


def _standardizer_json(spec: JobSpec, standardizer: Mapping[str, Sequence[float]]) -> str:
    if spec.data is None or not spec.data.standardize:
        raise ConfigError(
            f"job {spec.name}: a standardizer was given but the job does not standardize "
            "(data.standardize is false or there is no data section)"
        )
    if set(standardizer) != {"mean", "std"}:
        raise ConfigError(
            f"standardizer must hold exactly 'mean' and 'std', got {sorted(standardizer)}"
        )
    mean = [float(v) for v in standardizer["mean"]]
    std = [float(v) for v in standardizer["std"]]
    if len(mean) != len(std) or not mean:
        raise ConfigError(
            f"standardizer mean and std must be non-empty and equally long, "
            f"got {len(mean)} and {len(std)}"
        )
    if not all(math.isfinite(v) for v in mean) or not all(math.isfinite(v) and v > 0 for v in std):
        raise ConfigError("standardizer: every mean must be finite and every std finite and > 0")
    return _dumps({"mean": mean, "std": std})
