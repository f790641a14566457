"""Sample-level DP-SGD on a node through Opacus, as a ``Trainer`` for tabular binary models.

Abadi et al., "Deep Learning with Differential Privacy", CCS 2016: every example's gradient
is clipped to ``max_grad_norm`` and Gaussian noise of std ``noise_multiplier·max_grad_norm``
is added to each batch sum; batches are Poisson-sampled. This protects every row of the
department's data (sample-level DP), unlike ``dp.DPFedAvg``, which protects a department as
a whole (client-level DP). Opacus (Yousefpour et al., 2021) does the per-sample work and its
RDP accountant reports ε over all rounds a trainer has run.

Batch sampling and noise draw from torch generators seeded with 64 bits from the operating
system, never from ``FitConfig.seed`` (which the coordinator knows). torch's generator is
not a CSPRNG; Opacus's ``secure_mode`` would need ``torchcsprng``, which has no build for
this torch release.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import math
import secrets
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from opacus import PrivacyEngine
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from clawfed.core import ConfigError, DataError, Weights
from clawfed.learning.convert import load_weights, weights_from_module
from clawfed.learning.torch_trainer import TorchTabularTrainer
from clawfed.learning.trainer import (
    EvalConfig,
    EvalResult,
    FitConfig,
    FitResult,
    Optimizer,
    TrainData,
    TrainingDiverged,
)
from clawfed.privacy.accountant import check_delta, check_positive, epsilon_of_steps

# Warnings that are expected here and say nothing actionable, ignored only around Opacus:
# - Opacus warns that secure_mode is off (see the module docstring);
# - torch warns, from its full backward hooks, that no *input* needs a gradient, which is
#   always so for data; it is attributed to whichever frame called backward(), so it is
#   matched by its text alone.
_EXPECTED_WARNINGS = (
    ("Secure RNG turned off", r"opacus\.privacy_engine"),
    ("Full backward hook is firing when gradients are computed", ""),
)


@contextlib.contextmanager
def _expected_warnings_ignored() -> Iterator[None]:
    with warnings.catch_warnings():
        for message, module in _EXPECTED_WARNINGS:
            warnings.filterwarnings("ignore", message=message, category=UserWarning, module=module)
        yield


@dataclass(frozen=True)
class DPSGDSettings:
    """DP-SGD parameters: σ, the per-example clipping norm and the δ at which ε is reported."""

    noise_multiplier: float
    max_grad_norm: float
    delta: float = 1e-5

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "noise_multiplier", check_positive(self.noise_multiplier, "noise_multiplier")
        )
        object.__setattr__(
            self, "max_grad_norm", check_positive(self.max_grad_norm, "max_grad_norm")
        )
        object.__setattr__(self, "delta", check_delta(self.delta))


@dataclass
class PrivateTraining:
    """What ``make_private_training`` returns: Opacus-wrapped module, optimizer and loader."""

    module: nn.Module
    optimizer: torch.optim.Optimizer
    data_loader: DataLoader[tuple[torch.Tensor, ...]]
    engine: PrivacyEngine


def _os_generator() -> torch.Generator:
    return torch.Generator().manual_seed(secrets.randbits(63))


def new_privacy_engine() -> PrivacyEngine:
    """An Opacus ``PrivacyEngine`` with the RDP accountant (secure-mode warning filtered)."""
    with _expected_warnings_ignored():
        return PrivacyEngine(accountant="rdp")


def make_private_training(
    module: nn.Module,
    dataset: TensorDataset,
    config: FitConfig,
    settings: DPSGDSettings,
    *,
    engine: PrivacyEngine | None = None,
    noise_seed: int | None = None,
) -> PrivateTraining:
    """Wrap ``module``, a fresh optimizer and a Poisson-sampled loader over ``dataset``.

    Parameters
    ----------
    module
        The model; Opacus hooks it in place, so pass a copy you can discard.
    dataset
        ``(features, labels)`` tensors; reuse the same object across rounds so the engine
        accounts for one dataset.
    config
        Batch size (the expected Poisson batch), optimizer, lr, momentum, weight decay.
    settings
        σ, clipping norm and δ.
    engine
        The engine whose accountant keeps the history (a new one if ``None``).
    noise_seed
        Fixes batch sampling and noise (tests only); from the OS otherwise.

    Raises
    ------
    ConfigError
        If ``config.proximal_mu`` > 0: the proximal term is not a per-example loss.
    """
    if config.proximal_mu:
        raise ConfigError(
            f"DP-SGD does not support FedProx (proximal_mu={config.proximal_mu}): the "
            "proximal term is not a per-example loss; set proximal_mu to 0"
        )
    engine = engine if engine is not None else new_privacy_engine()
    if noise_seed is None:
        sample_gen, noise_gen = _os_generator(), _os_generator()
    else:
        sample_gen = torch.Generator().manual_seed(noise_seed)
        noise_gen = torch.Generator().manual_seed(noise_seed + 1)
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        raise ConfigError(f"model {type(module).__name__} has no trainable parameters")
    optimizer: torch.optim.Optimizer
    if config.optimizer is Optimizer.ADAM:
        optimizer = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    else:
        optimizer = torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    loader = DataLoader(dataset, batch_size=config.batch_size, generator=sample_gen)
    with _expected_warnings_ignored():
        private_module, private_opt, private_loader = engine.make_private(
            module=module,
            optimizer=optimizer,
            data_loader=loader,
            noise_multiplier=settings.noise_multiplier,
            max_grad_norm=settings.max_grad_norm,
            poisson_sampling=True,
            noise_generator=noise_gen,
        )
    return PrivateTraining(private_module, private_opt, private_loader, engine)


def _digest(data: TrainData) -> str:
    h = hashlib.sha256()
    h.update(data.features.tobytes())
    h.update(data.labels.tobytes())
    h.update("\x00".join(data.feature_names).encode())
    return h.hexdigest()


class DPSGDTabularTrainer:
    """A ``Trainer`` like ``TorchTabularTrainer`` whose ``fit`` runs DP-SGD.

    One trainer accounts for one dataset: ``fit`` refuses other data, because Opacus's
    accountant composes the rounds of one dataset. ``fit`` reports ``epsilon``, the
    sample-level ε spent so far at ``settings.delta``.
    """

    def __init__(
        self, module: nn.Module, settings: DPSGDSettings, *, noise_seed: int | None = None
    ) -> None:
        self._plain = TorchTabularTrainer(module)
        self.settings = settings
        self._engine = new_privacy_engine()
        self._noise_seed = noise_seed
        self._fits = 0
        self._data_digest: str | None = None
        self._dataset: TensorDataset | None = None

    @property
    def module(self) -> nn.Module:
        """The model being trained."""
        return self._plain.module

    def get_weights(self) -> Weights:
        """A snapshot of the module's weights."""
        return self._plain.get_weights()

    def set_weights(self, weights: Weights) -> None:
        """Load ``weights`` into the module."""
        self._plain.set_weights(weights)

    def evaluate(self, data: TrainData, config: EvalConfig) -> EvalResult:
        """Metrics of the current weights on ``data`` (as ``TorchTabularTrainer``)."""
        return self._plain.evaluate(data, config)

    def epsilon(self) -> float:
        """Sample-level ε spent by all ``fit`` calls so far, at ``settings.delta``.

        Computed by clawfed's accountant (``dp_accounting``, RDP) from the steps Opacus
        recorded, so node-level and job-level ε come from one implementation.
        """
        history = [(float(s), float(q), int(n)) for s, q, n in self._engine.accountant.history]
        return epsilon_of_steps(history, self.settings.delta)

    def _dataset_for(self, data: TrainData) -> TensorDataset:
        digest = _digest(data)
        if self._data_digest is None:
            bad = sorted(set(data.labels.tolist()) - {0, 1})
            if bad:
                raise DataError(f"labels must be 0 or 1 for a binary classifier, got {bad}")
            self._data_digest = digest
            self._dataset = TensorDataset(
                torch.tensor(data.features), torch.tensor(data.labels, dtype=torch.float32)
            )
        elif digest != self._data_digest:
            raise ConfigError(
                "this DP-SGD trainer already trained on another dataset; privacy is "
                "accounted per dataset, so make a new trainer for new data"
            )
        assert self._dataset is not None
        return self._dataset

    def fit(self, data: TrainData, config: FitConfig) -> FitResult:
        """Train ``config.epochs`` epochs of DP-SGD; report ``loss`` and ``epsilon``.

        The module is trained on a copy and the weights copied back only on success.

        Raises
        ------
        TrainingDiverged
            If the loss becomes NaN or infinite (the weights are left unchanged).
        """
        dataset = self._dataset_for(data)
        work = copy.deepcopy(self._plain.module)
        seed = None if self._noise_seed is None else self._noise_seed + 2 * self._fits
        private = make_private_training(
            work, dataset, config, self.settings, engine=self._engine, noise_seed=seed
        )
        loss = _run_epochs(private, config.epochs)
        self._fits += 1
        load_weights(self._plain.module, weights_from_module(work))
        return FitResult(data.num_samples, {"loss": loss, "epsilon": self.epsilon()})


def _run_epochs(private: PrivateTraining, epochs: int) -> float:
    """Run DP-SGD epochs; return the mean loss of the examples drawn in the last epoch."""
    module, opt = private.module, private.optimizer
    module.train()
    last = 0.0
    with _expected_warnings_ignored():
        for epoch in range(1, epochs + 1):
            total, seen = 0.0, 0
            for batch, (xb, yb) in enumerate(private.data_loader, start=1):
                opt.zero_grad(set_to_none=True)
                out = module(xb)
                logits = out.squeeze(-1) if out.ndim == 2 else out
                if xb.shape[0] == 0:  # Poisson sampling drew no row: still a noisy step
                    loss = (logits * 0.0).sum()
                else:
                    loss = F.binary_cross_entropy_with_logits(logits, yb)
                if not math.isfinite(float(loss.detach())):
                    raise TrainingDiverged(
                        f"DP-SGD diverged: loss is {float(loss.detach())} at epoch {epoch}, "
                        f"batch {batch}; lower lr; the weights from before fit are kept",
                        epoch=epoch,
                        batch=batch,
                    )
                loss.backward()
                opt.step()
                total += float(loss.detach()) * int(xb.shape[0])
                seen += int(xb.shape[0])
            last = total / seen if seen else 0.0
    return last
