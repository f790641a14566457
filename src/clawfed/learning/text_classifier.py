"""A fast text classifier: hashed character n-grams, ``nn.EmbeddingBag`` and a linear layer.

The model follows fastText (Joulin et al., "Bag of Tricks for Efficient Text
Classification", EACL 2017): a text is the mean of the embeddings of its character n-grams,
each n-gram hashed into one of ``buckets`` rows (the hashing trick, Weinberger et al., ICML
2009), followed by one linear layer over the classes. Texts are encoded on the node into a
fixed-width float32 matrix of n-gram ids (+1; 0 pads), so that they travel through the
``Trainer`` protocol's ``TrainData`` like any tabular rows.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import safetensors.numpy
import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from torch import nn

from clawfed.core import ClawfedError, ConfigError, DataError, Weights
from clawfed.learning.convert import check_weights_fit, load_weights, weights_from_module
from clawfed.learning.trainer import (
    EvalConfig,
    EvalResult,
    FitConfig,
    FitResult,
    Optimizer,
    TrainData,
    TrainingDiverged,
)

#: The name a job file gives this model (``model: {name: text_classifier}``).
TEXT_CLASSIFIER = "text_classifier"
#: Settings a job may give, with defaults (``classes`` has none: the job must list them).
DEFAULTS: Mapping[str, int] = {
    "buckets": 2**15,
    "dim": 32,
    "min_n": 1,
    "max_n": 3,
    "max_tokens": 256,
}


def _int(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(
            f"text_classifier: {name} must be an integer in [{low}, {high}], got {value!r}"
        )
    return value


@dataclass(frozen=True)
class TextModelSettings:
    """The classes and the shape of a text classifier.

    ``classes`` are the intents in label order; n-grams of ``min_n`` … ``max_n`` characters
    are hashed into ``buckets`` embedding rows of width ``dim``; a text keeps its first
    ``max_tokens`` n-grams.
    """

    classes: tuple[str, ...]
    buckets: int = DEFAULTS["buckets"]
    dim: int = DEFAULTS["dim"]
    min_n: int = DEFAULTS["min_n"]
    max_n: int = DEFAULTS["max_n"]
    max_tokens: int = DEFAULTS["max_tokens"]

    def __post_init__(self) -> None:
        classes = tuple(self.classes)
        if len(classes) < 2 or len(set(classes)) != len(classes):
            raise ConfigError(
                "text_classifier: classes must list at least 2 distinct labels, "
                f"got {list(classes)}"
            )
        if not all(isinstance(c, str) and c for c in classes):
            raise ConfigError(f"text_classifier: classes must be non-empty strings, got {classes}")
        object.__setattr__(self, "classes", classes)
        _int("buckets", self.buckets, 16, 2**24 - 1)  # ids stay exact in float32
        _int("dim", self.dim, 1, 1024)
        _int("min_n", self.min_n, 1, 8)
        _int("max_n", self.max_n, self.min_n, 8)
        _int("max_tokens", self.max_tokens, 1, 100_000)

    @classmethod
    def from_settings(cls, settings: Mapping[str, object]) -> TextModelSettings:
        """Build from a job's model settings (``classes`` required, the rest optional)."""
        unknown = sorted(set(settings) - {"classes", *DEFAULTS})
        if unknown:
            raise ConfigError(
                f"text_classifier: unknown setting(s) {unknown}; known: classes, "
                f"{', '.join(DEFAULTS)}"
            )
        classes = settings.get("classes")
        if not isinstance(classes, list | tuple):
            raise ConfigError(
                f"text_classifier: setting 'classes' must be a list of labels, got {classes!r}"
            )
        rest = {k: v for k, v in settings.items() if k != "classes"}
        return cls(tuple(str(c) for c in classes), **rest)  # type: ignore[arg-type]

    def to_settings(self) -> dict[str, object]:
        """The settings as a job file writes them (inverse of ``from_settings``)."""
        return {
            "classes": list(self.classes),
            "buckets": self.buckets,
            "dim": self.dim,
            "min_n": self.min_n,
            "max_n": self.max_n,
            "max_tokens": self.max_tokens,
        }


def ngram_ids(text: str, settings: TextModelSettings) -> list[int]:
    """Bucket ids (1-based) of the character n-grams of ``text``, at most ``max_tokens``."""
    chars = text.strip().lower()
    out: list[int] = []
    for n in range(settings.min_n, settings.max_n + 1):
        for i in range(len(chars) - n + 1):
            gram = chars[i : i + n].encode("utf-8")
            out.append(zlib.crc32(gram, n) % settings.buckets + 1)
            if len(out) == settings.max_tokens:
                return out
    return out


def encode_texts(texts: Sequence[str], settings: TextModelSettings) -> npt.NDArray[np.float32]:
    """Texts as a ``(len(texts), width)`` float32 matrix of n-gram ids, 0-padded.

    ``width`` is the longest encoding (at least 1). An empty text becomes a row of zeros.
    """
    rows = [ngram_ids(t, settings) for t in texts]
    width = max([len(r) for r in rows] + [1])
    out = np.zeros((len(rows), width), dtype=np.float32)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def text_train_data(
    texts: Sequence[str], labels: npt.ArrayLike, settings: TextModelSettings
) -> TrainData:
    """Encoded texts and their class indices as ``TrainData`` (feature names ``tok0``…)."""
    x = encode_texts(texts, settings)
    y = np.asarray(labels, dtype=np.int64)
    return TrainData(x, y, tuple(f"tok{i}" for i in range(x.shape[1])))


class TextClassifier(nn.Module):
    """Mean of hashed n-gram embeddings, then a linear layer: one logit per class."""

    def __init__(self, settings: TextModelSettings) -> None:
        super().__init__()
        self.settings = settings
        self.embedding = nn.EmbeddingBag(
            settings.buckets + 1, settings.dim, mode="mean", padding_idx=0
        )
        self.linear = nn.Linear(settings.dim, len(settings.classes))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        bags: torch.Tensor = self.embedding(ids.long())
        out: torch.Tensor = self.linear(bags)
        return out


def build_text_classifier(
    settings: TextModelSettings, *, seed: int | None = None
) -> TextClassifier:
    """A new model; with ``seed`` its initial weights come from that seed alone."""
    if seed is None:
        return TextClassifier(settings)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return TextClassifier(settings)


class TextTrainer:
    """A ``Trainer`` for ``TextClassifier``: cross-entropy over shuffled mini-batches on CPU.

    ``fit`` is deterministic for the same starting weights, data and config (batch order
    from a ``torch.Generator`` seeded with ``config.seed``); the weights from before ``fit``
    come back when training fails or diverges.
    """

    def __init__(self, model: TextClassifier) -> None:
        self._model = model

    @property
    def model(self) -> TextClassifier:
        """The model being trained."""
        return self._model

    def get_weights(self) -> Weights:
        """A snapshot of the model's weights."""
        return weights_from_module(self._model)

    def set_weights(self, weights: Weights) -> None:
        """Load ``weights`` (names, shapes, dtypes and finiteness checked)."""
        load_weights(self._model, weights)

    def _check(self, data: TrainData) -> tuple[torch.Tensor, torch.Tensor]:
        n_classes = len(self._model.settings.classes)
        if int(data.labels.max()) >= n_classes:
            raise DataError(
                f"labels must be class indices below {n_classes}, got {int(data.labels.max())}"
            )
        ids = data.features
        if float(ids.max()) > self._model.settings.buckets or float(ids.min()) < 0:
            raise DataError("features must be n-gram ids in [0, buckets] (see encode_texts)")
        return torch.from_numpy(ids).long(), torch.from_numpy(data.labels)

    def fit(self, data: TrainData, config: FitConfig) -> FitResult:
        """Train for ``config.epochs`` epochs; returns the rows and the last epoch's ``loss``."""
        x, y = self._check(data)
        model = self._model
        before = {k: v.detach().clone() for k, v in model.state_dict().items()}
        params = list(model.parameters())
        if config.optimizer is Optimizer.ADAM:
            opt: torch.optim.Optimizer = torch.optim.Adam(
                params, lr=config.lr, weight_decay=config.weight_decay
            )
        else:
            opt = torch.optim.SGD(
                params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
            )
        gen = torch.Generator().manual_seed(config.seed)
        anchor = [p.detach().clone() for p in params]
        model.train()
        loss_sum = 0.0
        try:
            for _ in range(config.epochs):
                order = torch.randperm(len(y), generator=gen)
                loss_sum = 0.0
                for start in range(0, len(y), config.batch_size):
                    batch = order[start : start + config.batch_size]
                    opt.zero_grad()
                    loss = F.cross_entropy(model(x[batch]), y[batch])
                    if config.proximal_mu:
                        prox = sum(
                            ((p - a) ** 2).sum() for p, a in zip(params, anchor, strict=True)
                        )
                        loss = loss + 0.5 * config.proximal_mu * prox
                    value = float(loss.detach())
                    if not math.isfinite(value):
                        raise TrainingDiverged(
                            f"training diverged: loss became {value}; lower lr",
                            epoch=_ + 1,
                            batch=start // config.batch_size,
                        )
                    loss.backward()  # type: ignore[no-untyped-call]
                    opt.step()
                    loss_sum += value * len(batch)
        except BaseException:
            model.load_state_dict(before)
            raise
        return FitResult(data.num_samples, {"loss": loss_sum / data.num_samples})

    def predict_proba(self, ids: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Class probabilities, ``(rows, classes)``, of encoded texts."""
        self._model.eval()
        with torch.no_grad():
            logits = self._model(torch.from_numpy(np.ascontiguousarray(ids)).long())
            probs: npt.NDArray[np.float32] = torch.softmax(logits, dim=-1).numpy()
        return probs

    def evaluate(self, data: TrainData, config: EvalConfig) -> EvalResult:
        """``accuracy``, ``macro_f1`` and ``loss`` (mean cross-entropy) on ``data``."""
        x, y = self._check(data)
        self._model.eval()
        with torch.no_grad():
            logits = torch.cat(
                [
                    self._model(x[i : i + config.batch_size])
                    for i in range(0, len(y), config.batch_size)
                ]
            )
            loss = float(F.cross_entropy(logits, y))
        predicted = logits.argmax(dim=-1).numpy()
        truth = y.numpy()
        metrics = {
            "accuracy": float((predicted == truth).mean()),
            "macro_f1": macro_f1(truth, predicted, len(self._model.settings.classes)),
            "loss": loss,
        }
        return EvalResult(data.num_samples, metrics)


def macro_f1(truth: npt.ArrayLike, predicted: npt.ArrayLike, n_classes: int) -> float:
    """Unweighted mean of the per-class F1 over the classes present in ``truth``."""
    t = np.asarray(truth)
    p = np.asarray(predicted)
    scores = []
    for c in range(n_classes):
        if not (t == c).any():
            continue
        tp = float(((p == c) & (t == c)).sum())
        fp = float(((p == c) & (t != c)).sum())
        fn = float(((p != c) & (t == c)).sum())
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return float(np.mean(scores)) if scores else 0.0


#: The safetensors metadata key of a saved text model's settings (canonical JSON).
SETTINGS_KEY = "clawfed.text_classifier"


def save_text_model(path: Path, weights: Weights, settings: TextModelSettings) -> Path:
    """Write ``weights`` with ``settings`` in the metadata, as one self-contained file."""
    check_weights_fit(build_text_classifier(settings), weights)
    meta = {SETTINGS_KEY: json.dumps(settings.to_settings(), ensure_ascii=False, sort_keys=True)}
    tmp = path.with_name(path.name + ".tmp")
    safetensors.numpy.save_file(
        {k: np.ascontiguousarray(v) for k, v in weights.items()}, str(tmp), metadata=meta
    )
    tmp.replace(path)
    return path


def load_text_model(path: Path, settings: TextModelSettings | None = None) -> TextTrainer:
    """A trainer holding the model saved at ``path`` (a saved text model or a version file).

    ``settings`` are read from the file's metadata when it has them (``save_text_model``);
    a bare version file from the registry needs them given (from the job file).

    Raises
    ------
    ConfigError
        When the file is missing or unreadable, carries no settings and none are given, or
        its weights do not fit the settings.
    """
    try:
        with safe_open(str(path), framework="np") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (OSError, SafetensorError) as exc:
        raise ConfigError(f"model file {str(path)!r} cannot be read: {exc}") from exc
    if SETTINGS_KEY in meta:
        settings = TextModelSettings.from_settings(json.loads(meta[SETTINGS_KEY]))
    if settings is None:
        raise ConfigError(
            f"model file {str(path)!r} carries no text_classifier settings; give the job file "
            "that trained it (its model settings: classes …)"
        )
    trainer = TextTrainer(build_text_classifier(settings))
    names = [n for n, _ in trainer.model.state_dict().items()]
    missing = sorted(set(names) - set(tensors))
    if missing:
        raise ConfigError(f"model file {str(path)!r} lacks tensor(s) {missing}")
    try:
        trainer.set_weights(Weights((n, tensors[n]) for n in names))
    except ClawfedError as exc:
        raise ConfigError(f"model file {str(path)!r} does not fit its settings: {exc}") from exc
    return trainer
