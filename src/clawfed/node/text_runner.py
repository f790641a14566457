"""``TextRunner``: a node's init, fit and evaluate tasks for the text classifier on its messages.

The node reads its table, keeps the rows whose subject consents, replaces personal data in
the text column by placeholders when its dataset spec says ``redact: true`` (before the text
is used at all), encodes the texts as hashed n-grams and trains ``TextClassifier``. Only
weights, metrics and row counts leave the node.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from clawfed.aggregation import ConfigValue
from clawfed.core import ConfigError, DataError, Weights
from clawfed.data import Task, holdout_indices, read_source
from clawfed.learning import EvalConfig, TrainData
from clawfed.learning.text_classifier import (
    TEXT_CLASSIFIER,
    TextModelSettings,
    TextTrainer,
    build_text_classifier,
    text_train_data,
)
from clawfed.node.learning_runner import LocalData, Offer, resolve_offer
from clawfed.node.runner import EvalAnswer, FitAnswer
from clawfed.node.task_setup import JobData, TaskSetup, parse_task_config
from clawfed.privacy.consent import consent_filter
from clawfed.privacy.pii import redact

log = logging.getLogger("clawfed.node.text")


def is_text(config: Mapping[str, ConfigValue]) -> bool:
    """Whether a task's model is the built-in text classifier."""
    return config.get("model.name") == TEXT_CLASSIFIER


@dataclass(frozen=True)
class TextRows:
    """A node's encoded messages for one job, split into training and holdout rows."""

    train: TrainData
    holdout: TrainData
    excluded_no_consent: int
    redacted: int


def redact_texts(texts: Sequence[str]) -> tuple[list[str], int]:
    """Each text with its personal data replaced, and how many findings were replaced."""
    out: list[str] = []
    found = 0
    for t in texts:
        r = redact(t)
        out.append(r.text)
        found += len(r.findings)
    return out, found


def _labels(
    values: Sequence[object], classes: Sequence[str], dataset: str
) -> npt.NDArray[np.int64]:
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted({str(v) for v in values} - set(index))
    if unknown:
        raise DataError(
            f"dataset {dataset!r}: label(s) {unknown[:5]} are not among the job's classes "
            f"({', '.join(classes)})"
        )
    return np.array([index[str(v)] for v in values], dtype=np.int64)


def load_text_rows(offer: Offer, data: JobData, settings: TextModelSettings) -> TextRows:
    """Read, filter by consent, redact, label, split and encode one offer's messages.

    Raises
    ------
    ConfigError
        If the offer is not a dataset spec with a ``text_column`` naming the job's feature.
    DataError
        If a column is missing, a label is not a job class, or no row consents.
    """
    spec = offer.declared
    name = data.dataset
    if spec is None or spec.text_column is None:
        raise ConfigError(
            f"dataset {name!r}: a text model needs a dataset spec (YAML) with text_column"
        )
    if list(data.features) != [spec.text_column]:
        raise ConfigError(
            f"dataset {name!r}: the job's features {list(data.features)} must be exactly the "
            f"spec's text_column [{spec.text_column!r}]"
        )
    frame = read_source(offer.source, name)
    keep = consent_filter(name, spec.consent_column)
    excluded = 0
    if keep is not None:
        kept = keep(frame)
        excluded, frame = len(frame) - len(kept), kept
    for column in (spec.text_column, data.target):
        if column not in frame.columns:
            raise DataError(
                f"dataset {name!r}: column {column!r} not found; available: "
                f"{[str(c) for c in frame.columns]}"
            )
    texts = ["" if v != v else str(v) for v in frame[spec.text_column].tolist()]
    found = 0
    if spec.redact:
        texts, found = redact_texts(texts)
    labels = _labels(frame[data.target].tolist(), settings.classes, name)
    train, hold = holdout_indices(labels, Task.MULTICLASS, data.holdout_fraction, data.seed, name)
    log.info(
        "dataset %s read: %d message(s), %d left out for lack of consent, %d finding(s) redacted",
        name,
        len(texts),
        excluded,
        found,
    )
    return TextRows(
        text_train_data([texts[i] for i in train], labels[train], settings),
        text_train_data([texts[i] for i in hold], labels[hold], settings),
        excluded,
        found,
    )


class TextRunner:
    """Runs text-classifier tasks on the node's own messages; messages never leave.

    Parameters
    ----------
    datasets
        What the node offers, by the name jobs use (dataset specs with ``text_column``).
    cache_size
        Loaded datasets kept in memory (a changed file is read again).
    """

    def __init__(self, datasets: Mapping[str, LocalData], *, cache_size: int = 4) -> None:
        self._offers = {name: resolve_offer(local) for name, local in datasets.items()}
        self._cache: OrderedDict[tuple[str, ...], TextRows] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def init(self, config: Mapping[str, ConfigValue]) -> Weights:
        """Initial weights of the job's text classifier, seeded with ``train.seed``."""
        setup = parse_task_config(config)
        return TextTrainer(
            build_text_classifier(_settings(setup), seed=setup.fit.seed)
        ).get_weights()

    def stats(self, config: Mapping[str, ConfigValue]) -> Weights:
        """Text features are not standardized: always a ``ConfigError``."""
        raise ConfigError(
            f"model text_classifier (dataset {config.get('dataset')!r}) has no numeric "
            "features to standardize; set data.standardize: false in the job file"
        )

    def fit(self, config: Mapping[str, ConfigValue], weights: Weights) -> FitAnswer:
        """Train from ``weights`` on the redacted training messages; the delta goes back."""
        setup = parse_task_config(config)
        rows = self._rows(setup)
        trainer = self._trainer(setup, weights)
        result = trainer.fit(rows.train, setup.round_fit())
        new = trainer.get_weights()
        delta = Weights((n, np.subtract(new[n], old)) for n, old in weights.items())
        delta.check_finite()
        metrics = {
            **result.metrics,
            "rows_used": float(rows.train.num_samples),
            "rows_excluded_no_consent": float(rows.excluded_no_consent),
        }
        return FitAnswer(result.num_samples, metrics, delta)

    def evaluate(self, config: Mapping[str, ConfigValue], weights: Weights) -> EvalAnswer:
        """Accuracy, macro-F1 and loss of ``weights`` on the holdout messages."""
        setup = parse_task_config(config)
        rows = self._rows(setup)
        result = self._trainer(setup, weights).evaluate(rows.holdout, EvalConfig())
        metrics = {
            **result.metrics,
            "holdout_rows_used": float(rows.holdout.num_samples),
            "rows_excluded_no_consent": float(rows.excluded_no_consent),
        }
        return EvalAnswer(result.num_samples, metrics)

    def _trainer(self, setup: TaskSetup, weights: Weights) -> TextTrainer:
        trainer = TextTrainer(build_text_classifier(_settings(setup), seed=setup.fit.seed))
        trainer.set_weights(weights)
        return trainer

    def _rows(self, setup: TaskSetup) -> TextRows:
        data = setup.data
        offer = self._offers.get(data.dataset)
        if offer is None:
            offered = ", ".join(sorted(self._offers)) or "none"
            raise ConfigError(
                f"this node offers no dataset {data.dataset!r} (it offers: {offered})"
            )
        settings = _settings(setup)
        stamp: tuple[str, ...] = ()
        path = getattr(offer.source, "path", None)
        if path is not None:
            try:
                st = path.stat()
                stamp = (str(st.st_size), str(st.st_mtime_ns))
            except OSError:
                stamp = ()
        key = (data.key(), repr(settings), *stamp)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
            rows = load_text_rows(offer, data, settings)
            self._cache[key] = rows
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
            return rows


def _settings(setup: TaskSetup) -> TextModelSettings:
    return TextModelSettings.from_settings({k: v for k, v in setup.model.items() if k != "name"})
