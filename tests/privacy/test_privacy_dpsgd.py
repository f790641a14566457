"""Sample-level DP-SGD through Opacus as a tabular ``Trainer``, on tiny data."""

from __future__ import annotations

import dp_accounting
import numpy as np
import pytest
import torch
from dp_accounting.rdp import RdpAccountant
from opacus.optimizers import DPOptimizer

from clawfed.core import ConfigError
from clawfed.learning.models import build_model
from clawfed.learning.trainer import EvalConfig, FitConfig, TrainData
from clawfed.privacy.dpsgd import DPSGDSettings, DPSGDTabularTrainer, make_private_training


def _data(seed: int = 0, n: int = 96) -> TrainData:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64)
    return TrainData(x, y, ("a", "b", "c"))


def _trainer(noise_seed: int | None = 7, sigma: float = 1.0) -> DPSGDTabularTrainer:
    module = build_model("logistic_regression", 3, seed=1)
    return DPSGDTabularTrainer(
        module, DPSGDSettings(sigma, max_grad_norm=1.0, delta=1e-5), noise_seed=noise_seed
    )


CONFIG = FitConfig(epochs=2, batch_size=16, lr=0.5, seed=0)


def test_fit_trains_and_reports_sample_level_epsilon() -> None:
    data = _data()
    trainer = _trainer()
    before = trainer.get_weights()
    first = trainer.fit(data, CONFIG)
    after = trainer.get_weights()
    assert not np.array_equal(before["linear.weight"], after["linear.weight"])
    eps1 = first.metrics["epsilon"]
    second = trainer.fit(data, CONFIG)
    assert 0.0 < eps1 < second.metrics["epsilon"]  # the accountant composes the rounds
    # the weights are those of the plain module: state_dict keys unchanged by Opacus
    assert list(trainer.get_weights()) == list(before)
    acc = trainer.evaluate(data, EvalConfig()).metrics["accuracy"]
    assert acc > 0.7


def test_reported_epsilon_agrees_with_dp_accounting() -> None:
    data = _data()
    trainer = _trainer(sigma=1.5)
    result = trainer.fit(data, CONFIG)
    q = CONFIG.batch_size / data.num_samples
    steps = CONFIG.epochs * round(1 / q)
    event = dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(1.5)), steps
    )
    acc = RdpAccountant(orders=[float(a) for a in range(2, 64)])
    acc.compose(event)
    assert result.metrics["epsilon"] == pytest.approx(acc.get_epsilon(1e-5), rel=0.15)


def test_same_noise_seed_same_weights_otherwise_different() -> None:
    data = _data()
    a, b, c = _trainer(11), _trainer(11), _trainer(None)
    for t in (a, b, c):
        t.fit(data, CONFIG)
    wa, wb, wc = (t.get_weights()["linear.weight"] for t in (a, b, c))
    assert np.array_equal(wa, wb)
    assert not np.array_equal(wa, wc)


def test_one_trainer_accounts_for_one_dataset() -> None:
    trainer = _trainer()
    trainer.fit(_data(0), CONFIG)
    with pytest.raises(ConfigError, match="another dataset"):
        trainer.fit(_data(1), CONFIG)


def test_fedprox_and_bad_settings_are_refused() -> None:
    trainer = _trainer()
    with pytest.raises(ConfigError, match="proximal_mu"):
        trainer.fit(_data(), FitConfig(proximal_mu=0.1))
    with pytest.raises(ConfigError, match="noise_multiplier must be > 0"):
        DPSGDSettings(0.0, 1.0)
    with pytest.raises(ConfigError, match="max_grad_norm must be > 0"):
        DPSGDSettings(1.0, -1.0)
    with pytest.raises(ConfigError, match="δ"):
        DPSGDSettings(1.0, 1.0, delta=0.0)


def test_make_private_training_clips_per_example() -> None:
    data = _data()
    dataset = torch.utils.data.TensorDataset(
        torch.tensor(data.features), torch.tensor(data.labels, dtype=torch.float32)
    )
    module = build_model("logistic_regression", 3, seed=2)
    private = make_private_training(module, dataset, CONFIG, DPSGDSettings(0.8, 0.25), noise_seed=3)
    assert isinstance(private.optimizer, DPOptimizer)
    assert private.optimizer.max_grad_norm == 0.25
    assert private.optimizer.noise_multiplier == 0.8
    assert private.data_loader.dataset is dataset
