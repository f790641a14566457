"""``LearningRunner``: a node's init, stats, fit and evaluate tasks on its own tabular data."""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import ValidationError
from torch import nn

from clawfed.aggregation import ConfigValue
from clawfed.core import ConfigError, DataError, Weights
from clawfed.core.validation import describe_errors
from clawfed.data import (
    ColumnType,
    CsvSource,
    DatasetSpec,
    Harmonization,
    LocalDataset,
    Moments,
    ParquetSource,
    SqlSource,
    Standardizer,
    Task,
    load_harmonization,
    load_spec,
    load_split,
    local_moments,
)
from clawfed.learning import EvalConfig, TrainData
from clawfed.learning.convert import weights_from_module
from clawfed.learning.models import model_from_spec
from clawfed.learning.torch_trainer import TorchTabularTrainer
from clawfed.node.metadata import dataset_metadata
from clawfed.node.runner import EvalAnswer, FitAnswer
from clawfed.node.task_setup import STANDARDIZER, JobData, TaskSetup, parse_task_config
from clawfed.privacy.consent import ConsentCount, consent_filter
from clawfed.privacy.dpsgd_task import dpsgd_request, fit_private

log = logging.getLogger("clawfed.node.consent")

#: Suffixes of the files a node may offer: data files, or a dataset spec naming its source.
DATA_SUFFIXES = (".csv", ".parquet", ".pq")
SPEC_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class LocalData:
    """A dataset the node offers: the name jobs use, its file, and its harmonization file.

    ``path`` is a CSV or Parquet file, or a dataset spec (YAML, see ``data.load_spec``) whose
    ``source`` says where the rows are (a CSV, Parquet file or SQL query).
    """

    name: str
    path: Path
    mapping: Path | None = None


@dataclass(frozen=True)
class Offer:
    """A ``LocalData`` resolved at start-up: its source and harmonization, read once."""

    local: LocalData
    source: CsvSource | ParquetSource | SqlSource
    declared: DatasetSpec | None
    harmonization: Harmonization | None


def resolve_offer(local: LocalData) -> Offer:
    """Check the file suffix, read a dataset spec and the harmonization file if given.

    Raises
    ------
    ConfigError
        For an unsupported suffix, or an unreadable spec or harmonization file.
    """
    suffix = local.path.suffix.lower()
    declared: DatasetSpec | None = None
    source: CsvSource | ParquetSource | SqlSource
    if suffix == ".csv":
        source = CsvSource(path=local.path)
    elif suffix in (".parquet", ".pq"):
        source = ParquetSource(path=local.path)
    elif suffix in SPEC_SUFFIXES:
        declared = load_spec(local.path)
        source = declared.source
    else:
        raise ConfigError(
            f"dataset {local.name!r}: file {local.path.name!r} must end in "
            f"{', '.join(DATA_SUFFIXES + SPEC_SUFFIXES)} (CSV, Parquet, or a dataset spec)"
        )
    mapping = load_harmonization(local.mapping) if local.mapping is not None else None
    return Offer(local, source, declared, mapping)


def moments_weights(moments: Moments) -> Weights:
    """``Moments`` as the STATS answer: ``count`` (int64, shape (1,)), ``sum`` and ``m2``."""
    return Weights(
        {
            "count": np.array([moments.count], dtype=np.int64),
            "sum": np.asarray(moments.sum, dtype=np.float64),
            "m2": np.asarray(moments.m2, dtype=np.float64),
        }
    )


def moments_from_weights(weights: Weights) -> Moments:
    """The inverse of ``moments_weights`` (validated; what the coordinator combines)."""
    try:
        count = int(weights["count"].reshape(-1)[0])
        total = np.asarray(weights["sum"], dtype=np.float64)
        m2 = np.asarray(weights["m2"], dtype=np.float64)
        return Moments(count=count, sum=total, m2=m2)
    except (KeyError, IndexError) as exc:
        raise DataError(f"stats answer must hold tensors count, sum and m2: {exc!r}") from exc


class LearningRunner:
    """Trains and evaluates the job's model on the node's own data; rows never leave.

    Parameters
    ----------
    datasets
        What the node offers, by the name jobs use.
    num_threads
        torch threads for training (process-wide); 1 shares the machine with other work.
    allowed_modules
        Packages a job's ``custom`` model may come from; none by default.
    cache_size
        Loaded datasets kept in memory, so each round does not re-read the file.
    """

    def __init__(
        self,
        datasets: Mapping[str, LocalData],
        *,
        num_threads: int | None = 1,
        allowed_modules: Sequence[str] = (),
        cache_size: int = 4,
    ) -> None:
        if isinstance(cache_size, bool) or not isinstance(cache_size, int) or cache_size < 1:
            raise ConfigError(f"cache_size must be an integer >= 1, got {cache_size!r}")
        self._offers = {name: resolve_offer(local) for name, local in datasets.items()}
        self._num_threads = num_threads
        self._allowed = tuple(allowed_modules)
        self._cache: OrderedDict[tuple[str, ...], tuple[LocalDataset, LocalDataset]] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def describe(self) -> list[tuple[str, str]]:
        """(name, metadata JSON) per dataset for Hello: a profile or file facts, no row values."""
        out: list[tuple[str, str]] = []
        for name, o in self._offers.items():
            meta = dataset_metadata(o.local.path, o.source, o.declared, o.harmonization)
            out.append((name, json.dumps(meta, ensure_ascii=False)))
        return out

    def init(self, config: Mapping[str, ConfigValue]) -> Weights:
        """The job's model built for this node's encoded width, seeded with ``train.seed``."""
        setup = parse_task_config(config)
        train, _ = self._split(setup.data)
        return weights_from_module(self._model(setup, train.num_features, seed=setup.fit.seed))

    def stats(self, config: Mapping[str, ConfigValue]) -> Weights:
        """Moments of the encoded training features (count, sum, m2), for standardization."""
        setup = parse_task_config(config)
        train, _ = self._split(setup.data)
        try:
            moments = local_moments(train.features)
        except DataError as exc:
            raise DataError(f"dataset {setup.data.dataset!r}: {exc}") from exc
        return moments_weights(moments)

    def fit(self, config: Mapping[str, ConfigValue], weights: Weights) -> FitAnswer:
        """Train from ``weights`` on the training rows; the delta is new minus ``weights``."""
        setup = parse_task_config(config)
        train = self._rows(setup, holdout=False)
        private = dpsgd_request(config)  # sample-level DP-SGD (privacy/dpsgd_task.py)
        if private is not None:
            model = self._model(setup, train.num_features, seed=setup.fit.seed)
            new, result = fit_private(
                model, weights, train, setup.round_fit(), private, setup.round_no or 1
            )
        else:
            trainer = self._trainer(setup, train.num_features, weights)
            result = trainer.fit(train, setup.round_fit())
            new = trainer.get_weights()
        delta = Weights((name, np.subtract(new[name], old)) for name, old in weights.items())
        delta.check_finite()
        metrics = {**result.metrics, **self._consent_metrics(setup.data, holdout=False)}
        return FitAnswer(result.num_samples, metrics, delta)

    def evaluate(self, config: Mapping[str, ConfigValue], weights: Weights) -> EvalAnswer:
        """Metrics of ``weights`` on the holdout rows (accuracy … roc_auc, log_loss)."""
        setup = parse_task_config(config)
        holdout = self._rows(setup, holdout=True)
        trainer = self._trainer(setup, holdout.num_features, weights)
        result = trainer.evaluate(holdout, EvalConfig())
        metrics = {**result.metrics, **self._consent_metrics(setup.data, holdout=True)}
        return EvalAnswer(result.num_samples, metrics)

    def _consent_metrics(self, data: JobData, *, holdout: bool) -> dict[str, float]:
        """Rows the task used and ``rows_excluded_no_consent`` (counts, never rows).

        A fit reports ``rows_used`` (training rows), an evaluation ``holdout_rows_used``.

        Empty when the dataset declares no consent column.
        """
        offer = self._offers[data.dataset]
        if offer.declared is None or offer.declared.consent_column is None:
            return {}
        train, held = self._split(data)
        if holdout:
            return {
                "holdout_rows_used": float(held.num_rows),
                "rows_excluded_no_consent": float(held.excluded_no_consent),
            }
        return ConsentCount(train.num_rows, train.excluded_no_consent).as_metrics()

    def _model(self, setup: TaskSetup, n_features: int, *, seed: int) -> nn.Module:
        return model_from_spec(setup.model, n_features, seed=seed, allowed_modules=self._allowed)

    def _trainer(self, setup: TaskSetup, n_features: int, weights: Weights) -> TorchTabularTrainer:
        model = self._model(setup, n_features, seed=setup.fit.seed)
        trainer = TorchTabularTrainer(model, num_threads=self._num_threads)
        trainer.set_weights(weights)
        return trainer

    def _rows(self, setup: TaskSetup, *, holdout: bool) -> TrainData:
        """The training or holdout rows, standardized with the job's pooled moments."""
        data = setup.data
        train, held = self._split(data)
        if data.standardize and setup.standardizer is None:
            raise ConfigError(
                f"job on dataset {data.dataset!r} standardizes its features but the task "
                f"carries no {STANDARDIZER!r}; the coordinator must run the STATS phase first"
            )
        return _train_data(held if holdout else train, setup.standardizer)

    def _split(self, data: JobData) -> tuple[LocalDataset, LocalDataset]:
        offer = self._offers.get(data.dataset)
        if offer is None:
            offered = ", ".join(sorted(self._offers)) or "none"
            raise ConfigError(
                f"this node offers no dataset {data.dataset!r} (it offers: {offered})"
            )
        key = (data.key(), *source_stamp(offer.source))
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
            loaded = load_offer(offer, data)
            self._cache[key] = loaded
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
            return loaded


def source_stamp(source: CsvSource | ParquetSource | SqlSource) -> tuple[str, ...]:
    """Size and modification time of a file source, so an edited file is read again."""
    if isinstance(source, SqlSource):
        return ()
    try:
        st = source.path.stat()
    except OSError:
        return ()
    return (str(st.st_size), str(st.st_mtime_ns))


def load_offer(offer: Offer, data: JobData) -> tuple[LocalDataset, LocalDataset]:
    """The training and holdout rows of ``offer`` as a task describes them (consenting only)."""
    declared = offer.declared
    task = declared.task if declared is not None else Task.BINARY
    if task is not Task.BINARY:
        raise ConfigError(
            f"dataset {data.dataset!r}: its spec declares task {task}; this node trains "
            "binary classifiers only"
        )
    try:
        spec = DatasetSpec(
            name=data.dataset,
            source=offer.source,
            target=data.target,
            features=data.features,
            types=dict(data.types),
            categories=dict(data.categories),
            positive_label=declared.positive_label if declared is not None else None,
            consent_column=declared.consent_column if declared is not None else None,
        )
    except ValidationError as exc:
        raise ConfigError(f"dataset {data.dataset!r}: {describe_errors(exc)}") from exc
    train, holdout = load_split(
        spec,
        offer.harmonization,
        holdout_fraction=data.holdout_fraction,
        seed=data.seed,
        rows=consent_filter(spec.name, spec.consent_column),
    )
    if spec.consent_column is not None:
        log.info(
            "dataset %s read: %d row(s) used, %d left out for lack of consent (column %s)",
            data.dataset,
            train.num_rows + holdout.num_rows,
            train.excluded_no_consent,
            spec.consent_column,
        )
    undeclared = [
        c
        for c, kind in train.column_types.items()
        if kind is ColumnType.CATEGORICAL and c not in data.categories
    ]
    if undeclared:
        raise DataError(
            f"dataset {data.dataset!r}: column(s) {undeclared} hold text here but the job lists "
            "no categories for them; add them to the job's data.categories (or declare them "
            "numeric under data.types) so that every department encodes them alike"
        )
    return train, holdout


def _train_data(ds: LocalDataset, standardizer: Standardizer | None) -> TrainData:
    features = ds.features
    if standardizer is not None:
        if standardizer.num_features != ds.num_features:
            raise DataError(
                f"dataset {ds.name!r}: the job's standardizer covers "
                f"{standardizer.num_features} feature(s) but this node encodes "
                f"{ds.num_features}; the departments' encodings differ (check data.types "
                "and data.categories)"
            )
        features = np.ascontiguousarray(standardizer.transform(features), dtype=np.float32)
    labels = np.asarray(ds.labels, dtype=np.int64)
    return TrainData(features, labels, ds.feature_names)
