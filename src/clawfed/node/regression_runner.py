"""``RegressionRunner``: a node's init, stats, fit and evaluate for regression models."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pydantic import ValidationError

from clawfed.aggregation import ConfigValue
from clawfed.core import ConfigError, DataError, Weights
from clawfed.core.validation import describe_errors
from clawfed.data import (
    DatasetSpec,
    Harmonization,
    LocalDataset,
    Task,
    encode_frame,
    load_split,
    local_moments,
    read_source,
)
from clawfed.learning import EvalConfig
from clawfed.learning.convert import weights_from_module
from clawfed.learning.regression import (
    REGRESSION_MODELS,
    RegressionData,
    TorchRegressionTrainer,
    build_regressor,
)
from clawfed.node.learning_runner import (
    LocalData,
    Offer,
    moments_weights,
    resolve_offer,
    source_stamp,
)
from clawfed.node.runner import EvalAnswer, FitAnswer
from clawfed.node.task_setup import STANDARDIZER, JobData, TaskSetup, parse_task_config
from clawfed.privacy.consent import consent_filter

__all__ = ["REGRESSION_MODELS", "EncodedRows", "RegressionRunner", "is_regression"]


def is_regression(config: Mapping[str, ConfigValue]) -> bool:
    """Whether a task's model (``model.name``) is a built-in regression model."""
    return config.get("model.name") in REGRESSION_MODELS


@dataclass(frozen=True)
class EncodedRows:
    """All of a node's rows for a job: the harmonized frame and its encoded features."""

    frame: pd.DataFrame
    features: np.ndarray
    targets: np.ndarray


class RegressionRunner:
    """Trains and evaluates a regression model on the node's data; rows never leave.

    Parameters
    ----------
    datasets
        What the node offers, by the name jobs use.
    num_threads
        torch threads (process-wide).
    cache_size
        Loaded splits kept in memory.
    """

    def __init__(
        self, datasets: Mapping[str, LocalData], *, num_threads: int | None = 1, cache_size: int = 4
    ) -> None:
        self._offers = {name: resolve_offer(local) for name, local in datasets.items()}
        self._num_threads = num_threads
        self._cache: OrderedDict[tuple[str, ...], tuple[LocalDataset, LocalDataset]] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    # ---- tasks --------------------------------------------------------------------------
    def init(self, config: Mapping[str, ConfigValue]) -> Weights:
        """The job's regression model for this node's encoded width, seeded with ``train.seed``."""
        setup = parse_task_config(config)
        train, _ = self._split(setup.data)
        name, settings = _model(setup)
        module = build_regressor(name, train.num_features, settings, seed=setup.fit.seed)
        return weights_from_module(module)

    def stats(self, config: Mapping[str, ConfigValue]) -> Weights:
        """Moments (count, sum, m2) of the encoded training features, for standardization."""
        setup = parse_task_config(config)
        train, _ = self._split(setup.data)
        try:
            return moments_weights(local_moments(train.features))
        except DataError as exc:
            raise DataError(f"dataset {setup.data.dataset!r}: {exc}") from exc

    def fit(self, config: Mapping[str, ConfigValue], weights: Weights) -> FitAnswer:
        """Train from ``weights`` by MSE on the training rows; the answer carries the delta."""
        setup = parse_task_config(config)
        train, _ = self._split(setup.data)
        trainer = self.trainer(setup, train.num_features, weights)
        result = trainer.fit(self._rows(setup, train), setup.round_fit())
        new = trainer.get_weights()
        delta = Weights((name, np.subtract(new[name], old)) for name, old in weights.items())
        delta.check_finite()
        return FitAnswer(result.num_samples, result.metrics, delta)

    def evaluate(self, config: Mapping[str, ConfigValue], weights: Weights) -> EvalAnswer:
        """MAE, RMSE, MSE, bias and R² of ``weights`` on the holdout rows."""
        setup = parse_task_config(config)
        _, holdout = self._split(setup.data)
        trainer = self.trainer(setup, holdout.num_features, weights)
        result = trainer.evaluate(self._rows(setup, holdout), EvalConfig())
        return EvalAnswer(result.num_samples, result.metrics)

    # ---- shared with the query ------------------------------------------------------------
    def trainer(
        self, setup: TaskSetup, n_features: int, weights: Weights
    ) -> TorchRegressionTrainer:
        """A trainer over the job's model holding ``weights``."""
        name, settings = _model(setup)
        module = build_regressor(name, n_features, settings, seed=setup.fit.seed)
        trainer = TorchRegressionTrainer(module, num_threads=self._num_threads)
        trainer.set_weights(weights)
        return trainer

    def all_rows(self, setup: TaskSetup) -> EncodedRows:
        """Every row of the job's dataset, harmonized and encoded (standardized if the job is).

        Missing values are imputed with statistics of these rows; the frame keeps every
        column of the source, so a query can group and filter by columns that are no feature.
        """
        offer = self._offer(setup.data)
        spec = _spec(offer, setup.data)
        raw = read_source(offer.source, spec.name)
        keep = consent_filter(spec.name, spec.consent_column)
        if keep is not None:  # rows without consent never reach a query or an evaluation
            raw = keep(raw)
        harmonization = offer.harmonization or Harmonization()
        frame = harmonization.apply(raw, dataset=spec.name).reset_index(drop=True)
        encoded = encode_frame(frame, spec)
        features = self._scaled(setup, encoded.features, spec.name)
        targets = np.asarray(encoded.labels, dtype=np.float32)
        return EncodedRows(frame, features, targets)

    # ---- internals ----------------------------------------------------------------------
    def _scaled(self, setup: TaskSetup, features: np.ndarray, dataset: str) -> np.ndarray:
        if setup.data.standardize and setup.standardizer is None:
            raise ConfigError(
                f"job on dataset {setup.data.dataset!r} standardizes its features but the task "
                f"carries no {STANDARDIZER!r}; the coordinator must run the STATS phase first"
            )
        if setup.standardizer is None:
            return np.ascontiguousarray(features, dtype=np.float32)
        if setup.standardizer.num_features != features.shape[1]:
            raise DataError(
                f"dataset {dataset!r}: the job's standardizer covers "
                f"{setup.standardizer.num_features} feature(s) but this node encodes "
                f"{features.shape[1]}; check data.types and data.categories"
            )
        return np.ascontiguousarray(setup.standardizer.transform(features), dtype=np.float32)

    def _rows(self, setup: TaskSetup, ds: LocalDataset) -> RegressionData:
        features = self._scaled(setup, ds.features, ds.name)
        return RegressionData(features, np.asarray(ds.labels, dtype=np.float32))

    def _offer(self, data: JobData) -> Offer:
        offer = self._offers.get(data.dataset)
        if offer is None:
            offered = ", ".join(sorted(self._offers)) or "none"
            raise ConfigError(
                f"this node offers no dataset {data.dataset!r} (it offers: {offered})"
            )
        return offer

    def _split(self, data: JobData) -> tuple[LocalDataset, LocalDataset]:
        offer = self._offer(data)
        key = (data.key(), *source_stamp(offer.source))  # an edited file is read again
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
            spec = _spec(offer, data)
            loaded = load_split(
                spec,
                offer.harmonization,
                holdout_fraction=data.holdout_fraction,
                seed=data.seed,
                rows=consent_filter(spec.name, spec.consent_column),
            )
            self._cache[key] = loaded
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
            return loaded


def _model(setup: TaskSetup) -> tuple[str, dict[str, object]]:
    name = str(setup.model.get("name"))
    return name, {k: v for k, v in setup.model.items() if k != "name"}


def _spec(offer: Offer, data: JobData) -> DatasetSpec:
    declared = offer.declared
    if declared is not None and declared.task is not Task.REGRESSION:
        raise ConfigError(
            f"dataset {data.dataset!r}: its spec declares task {declared.task}; a regression "
            "model needs a numeric target (task regression)"
        )
    try:
        return DatasetSpec(
            name=data.dataset,
            source=offer.source,
            target=data.target,
            features=data.features,
            types=dict(data.types),
            categories=dict(data.categories),
            task=Task.REGRESSION,
            consent_column=declared.consent_column if declared is not None else None,
        )
    except ValidationError as exc:
        raise ConfigError(f"dataset {data.dataset!r}: {describe_errors(exc)}") from exc
