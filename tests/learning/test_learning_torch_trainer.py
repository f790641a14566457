"""Tests of ``TorchTabularTrainer``: learning, determinism, FedProx, divergence, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from clawfed.core import ConfigError, DataError, Weights
from clawfed.learning import EvalConfig, FitConfig, TrainData, Trainer, TrainingDiverged
from clawfed.learning.models import build_model
from clawfed.learning.torch_trainer import TorchTabularTrainer

torch.set_num_threads(1)


def _separable(n: int = 240, d: int = 4, seed: int = 0) -> TrainData:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    w = np.array([2.0, -1.5, 1.0, 0.5][:d])
    y = (x @ w > 0).astype(np.int64)
    x += np.where(y[:, None] == 1, 0.3, -0.3).astype(np.float32) * np.sign(w)  # widen the margin
    return TrainData(x, y, tuple(f"f{j}" for j in range(d)))


def _distance(a: Weights, b: Weights) -> float:
    total = 0.0
    for n in a:
        diff = a[n].astype(np.float64) - b[n].astype(np.float64)
        total += float(np.dot(diff.ravel(), diff.ravel()))
    return float(np.sqrt(total))


def _equal(a: Weights, b: Weights) -> bool:
    return list(a) == list(b) and all(a[n].tobytes() == b[n].tobytes() for n in a)


def test_is_a_trainer() -> None:
    assert isinstance(TorchTabularTrainer(build_model("logistic_regression", 2)), Trainer)


def test_logistic_regression_learns_a_separable_set() -> None:
    data = _separable()
    trainer = TorchTabularTrainer(build_model("logistic_regression", 4, seed=0), num_threads=1)
    before = trainer.evaluate(data, EvalConfig())
    fit = trainer.fit(data, FitConfig(epochs=15, batch_size=16, lr=0.5, seed=1))
    after = trainer.evaluate(data, EvalConfig())
    assert fit.num_samples == 240 and set(fit.metrics) == {"loss"}
    assert after.metrics["accuracy"] >= 0.97
    assert after.metrics["roc_auc"] >= 0.99
    assert after.metrics["log_loss"] < before.metrics["log_loss"]
    assert fit.metrics["loss"] < 0.3
    assert after.notes == ()


def test_mlp_with_adam_learns_too() -> None:
    data = _separable(seed=5)
    trainer = TorchTabularTrainer(build_model("mlp", 4, {"hidden": [8], "dropout": 0.1}, seed=0))
    trainer.fit(data, FitConfig(epochs=20, batch_size=32, lr=0.05, optimizer="adam"))  # type: ignore[arg-type]
    assert trainer.evaluate(data, EvalConfig()).metrics["accuracy"] >= 0.95


def test_same_seed_gives_bit_identical_weights() -> None:
    data = _separable(n=100)
    start = TorchTabularTrainer(
        build_model("mlp", 4, {"hidden": [6], "dropout": 0.3})
    ).get_weights()
    cfg = FitConfig(epochs=3, batch_size=8, lr=0.1, momentum=0.9, seed=11)
    runs: list[tuple[Weights, float]] = []
    for _ in range(2):
        tr = TorchTabularTrainer(build_model("mlp", 4, {"hidden": [6], "dropout": 0.3}))
        tr.set_weights(start)
        torch.manual_seed(12345 + len(runs))  # the global RNG must not matter
        result = tr.fit(data, cfg)
        runs.append((tr.get_weights(), result.metrics["loss"]))
    assert _equal(runs[0][0], runs[1][0])
    assert runs[0][1] == runs[1][1]
    other = TorchTabularTrainer(build_model("mlp", 4, {"hidden": [6], "dropout": 0.3}))
    other.set_weights(start)
    other.fit(data, FitConfig(epochs=3, batch_size=8, lr=0.1, momentum=0.9, seed=12))
    assert not _equal(runs[0][0], other.get_weights())


def test_seed_controls_the_batch_order() -> None:
    """Without dropout only the shuffle is random: the seed alone must decide the result."""
    data = _separable(n=60)
    start = TorchTabularTrainer(build_model("logistic_regression", 4, seed=0)).get_weights()

    def run(seed: int) -> Weights:
        tr = TorchTabularTrainer(build_model("logistic_regression", 4))
        tr.set_weights(start)
        tr.fit(data, FitConfig(epochs=2, batch_size=7, lr=0.3, seed=seed))
        return tr.get_weights()

    assert _equal(run(1), run(1))
    assert not _equal(run(1), run(2))


def test_fit_leaves_global_random_state_alone() -> None:
    state = torch.get_rng_state()
    tr = TorchTabularTrainer(build_model("mlp", 4, {"hidden": [4], "dropout": 0.5}, seed=0))
    tr.fit(_separable(n=40), FitConfig(epochs=1, batch_size=8))
    assert torch.equal(torch.get_rng_state(), state)


def test_fedprox_with_huge_mu_stays_near_the_global_weights() -> None:
    data = _separable(n=120)
    global_w = TorchTabularTrainer(build_model("logistic_regression", 4, seed=2)).get_weights()
    drift = {}
    for mu in (0.0, 50.0):
        tr = TorchTabularTrainer(build_model("logistic_regression", 4))
        tr.set_weights(global_w)
        result = tr.fit(data, FitConfig(epochs=10, batch_size=16, lr=0.02, proximal_mu=mu))
        drift[mu] = _distance(tr.get_weights(), global_w)
        if mu:
            assert result.metrics["proximal_term"] == pytest.approx(
                0.5 * mu * drift[mu] ** 2, rel=1e-3
            )
        else:
            assert "proximal_term" not in result.metrics
    assert drift[0.0] > 0.3
    assert drift[50.0] < 0.05 * drift[0.0]


def test_nan_loss_raises_and_restores_the_weights() -> None:
    data = _separable(n=64)
    big = TrainData(data.features * 1e3, data.labels, data.feature_names)
    tr = TorchTabularTrainer(build_model("logistic_regression", 4, seed=0))
    before = tr.get_weights()
    with pytest.raises(
        TrainingDiverged, match="training diverged: loss is .* at epoch 1, batch 2"
    ) as err:
        tr.fit(big, FitConfig(epochs=3, batch_size=8, lr=1e38))
    assert (err.value.epoch, err.value.batch) == (1, 2)
    assert "lower lr" in str(err.value)
    assert _equal(tr.get_weights(), before)


def test_weights_overflowing_in_the_last_step_are_caught() -> None:
    data = _separable(n=8)
    big = TrainData(data.features * 1e3, data.labels, data.feature_names)
    tr = TorchTabularTrainer(build_model("logistic_regression", 4, seed=0))
    before = tr.get_weights()
    with pytest.raises(TrainingDiverged, match="weights became NaN or Inf"):
        tr.fit(big, FitConfig(epochs=1, batch_size=8, lr=1e38))
    assert _equal(tr.get_weights(), before)


def test_evaluate_does_not_change_weights_and_notes_single_class() -> None:
    data = _separable(n=50)
    ones = TrainData(data.features, np.ones(50, dtype=np.int64), data.feature_names)
    tr = TorchTabularTrainer(build_model("mlp", 4, {"hidden": [4], "dropout": 0.5}, seed=0))
    before = tr.get_weights()
    first = tr.evaluate(ones, EvalConfig(batch_size=7))
    again = tr.evaluate(ones, EvalConfig(batch_size=50))
    assert _equal(tr.get_weights(), before)
    assert first.num_samples == 50 and "roc_auc" not in first.metrics
    assert any(n.startswith("roc_auc omitted") for n in first.notes)
    assert first.metrics["log_loss"] == pytest.approx(again.metrics["log_loss"], rel=1e-6)


def test_non_binary_labels_are_refused() -> None:
    data = _separable(n=10)
    three = TrainData(data.features, np.arange(10, dtype=np.int64) % 3, data.feature_names)
    tr = TorchTabularTrainer(build_model("logistic_regression", 4))
    with pytest.raises(
        DataError, match=r"labels must be 0 or 1 for a binary classifier, got \[2\]"
    ):
        tr.fit(three, FitConfig())
    with pytest.raises(DataError, match="labels must be 0 or 1"):
        tr.evaluate(three, EvalConfig())


def test_feature_count_mismatch_is_a_data_error() -> None:
    tr = TorchTabularTrainer(build_model("logistic_regression", 3))
    with pytest.raises(DataError, match=r"could not process features of shape \(10, 4\)"):
        tr.fit(_separable(n=10), FitConfig(batch_size=10))


class _TwoLogits(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.lin(x)
        return out


def test_model_with_wrong_output_shape_is_refused() -> None:
    tr = TorchTabularTrainer(_TwoLogits())
    with pytest.raises(ConfigError, match=r"must emit one logit per row: .* got \(5, 2\)"):
        tr.fit(_separable(n=10), FitConfig(batch_size=5))


def test_bad_constructor_arguments() -> None:
    with pytest.raises(ConfigError, match="num_threads must be an integer >= 1, got 0"):
        TorchTabularTrainer(build_model("logistic_regression", 2), num_threads=0)
    with pytest.raises(ConfigError, match="must be a torch.nn.Module, got str"):
        TorchTabularTrainer("model")  # type: ignore[arg-type]
    frozen = build_model("logistic_regression", 4)
    for p in frozen.parameters():
        p.requires_grad_(False)
    with pytest.raises(ConfigError, match="has no trainable parameter"):
        TorchTabularTrainer(frozen).fit(_separable(n=10), FitConfig())


class _BreaksOnSmallBatches(nn.Module):
    """Fine on full batches; emits a wrong shape on the short last batch."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.lin(x)
        return out if x.shape[0] == 7 else out.repeat(1, 2)


def test_error_after_some_steps_restores_the_weights() -> None:
    tr = TorchTabularTrainer(_BreaksOnSmallBatches())
    before = tr.get_weights()
    with pytest.raises(ConfigError, match=r"got \(3, 2\)"):
        tr.fit(_separable(n=10), FitConfig(batch_size=7, lr=0.5))
    assert _equal(tr.get_weights(), before)
