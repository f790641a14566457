"""``TorchTabularTrainer``: trains a binary-classifier ``nn.Module`` on tabular data."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from clawfed.core import ConfigError, DataError, Weights
from clawfed.learning.convert import load_weights, weights_from_module
from clawfed.learning.metrics import binary_metrics
from clawfed.learning.trainer import (
    EvalConfig,
    EvalResult,
    FitConfig,
    FitResult,
    Optimizer,
    TrainData,
    TrainingDiverged,
)


class TorchTabularTrainer:
    """A ``Trainer`` for any ``nn.Module`` that maps ``(batch, n_features)`` to one logit per row.

    Training minimises binary cross-entropy on the logits, plus the FedProx proximal term
    ``mu / 2 * ||w - w_global||^2`` when ``FitConfig.proximal_mu`` > 0 (Li et al., MLSys 2020),
    where ``w_global`` are the weights held when ``fit`` starts. Runs on the CPU.

    Given the same starting weights, data, config and thread count, ``fit`` produces
    bit-identical weights: dropout draws from ``config.seed`` and the batch order from a
    separate ``torch.Generator`` seeded alike; torch's global random state is left untouched.

    Parameters
    ----------
    module
        The model; it is trained in place.
    num_threads
        When given, calls ``torch.set_num_threads`` (process-wide) so that many nodes can share
        one machine without oversubscribing its cores; 1 is right for many nodes per machine.
    """

    def __init__(self, module: nn.Module, *, num_threads: int | None = None) -> None:
        if not isinstance(module, nn.Module):
            raise ConfigError(f"module must be a torch.nn.Module, got {type(module).__name__}")
        if num_threads is not None:
            if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1:
                raise ConfigError(f"num_threads must be an integer >= 1, got {num_threads!r}")
            torch.set_num_threads(num_threads)
        self._module = module

    @property
    def module(self) -> nn.Module:
        """The model being trained."""
        return self._module

    def get_weights(self) -> Weights:
        """A snapshot of the module's ``state_dict`` as ``Weights``."""
        return weights_from_module(self._module)

    def set_weights(self, weights: Weights) -> None:
        """Load ``weights`` into the module (names, shapes, dtypes and finiteness checked)."""
        load_weights(self._module, weights)

    def fit(self, data: TrainData, config: FitConfig) -> FitResult:
        """Train for ``config.epochs`` epochs of shuffled mini-batches.

        Returns the number of rows and ``loss`` (mean BCE over the last epoch), plus
        ``proximal_term`` (mu/2·||w − w_global||² at the end) when FedProx is on.

        Whatever goes wrong, the weights from before ``fit`` are restored.

        Raises
        ------
        DataError
            When a label is not 0/1 or the model cannot process the features.
        ConfigError
            When the model does not emit one logit per row or has nothing to train.
        TrainingDiverged
            When the loss or the weights become NaN or infinite.
        """
        x, y = _tensors(data)
        module = self._module
        params = [p for p in module.parameters() if p.requires_grad]
        if not params:
            raise ConfigError(f"model {type(module).__name__} has no trainable parameter")
        before = {k: v.detach().clone() for k, v in module.state_dict().items()}
        anchor = [p.detach().clone() for p in params]
        try:
            loss = _train(module, params, anchor, x, y, config)
            if not all(bool(torch.isfinite(p).all()) for p in params):
                raise TrainingDiverged(
                    f"training diverged: weights became NaN or Inf in epoch {config.epochs} "
                    f"(optimizer {config.optimizer}, lr {config.lr}); lower lr or scale the "
                    "features; the weights from before fit are kept",
                    epoch=config.epochs,
                    batch=-(-data.num_samples // config.batch_size),
                )
        except BaseException:
            module.load_state_dict(before)  # never leave a half-trained or broken model
            raise
        metrics = {"loss": loss}
        mu = config.proximal_mu
        if mu:
            with torch.no_grad():
                metrics["proximal_term"] = 0.5 * mu * float(_sq_dist(params, anchor))
        return FitResult(data.num_samples, metrics)

    def evaluate(self, data: TrainData, config: EvalConfig) -> EvalResult:
        """Accuracy, precision, recall, F1, ROC-AUC and log-loss on ``data``.

        Metrics undefined on this data (ROC-AUC with one class only …) are left out and
        explained in ``EvalResult.notes``. The weights are not changed.

        Raises
        ------
        DataError
            When a label is not 0/1 or the model cannot process the features.
        """
        x, y = _tensors(data)
        module = self._module
        module.eval()
        chunks: list[torch.Tensor] = []
        with torch.no_grad():
            for start in range(0, data.num_samples, config.batch_size):
                chunks.append(_forward(module, x[start : start + config.batch_size]))
        probs = torch.sigmoid(torch.cat(chunks).to(torch.float64)).numpy()
        report = binary_metrics(probs, y.numpy().astype(np.int64), config.threshold)
        return EvalResult(data.num_samples, report.values, report.notes)


def _train(
    module: nn.Module,
    params: list[nn.Parameter],
    anchor: list[torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    config: FitConfig,
) -> float:
    """Run the epochs; return the mean data loss of the last one."""
    mu = config.proximal_mu
    opt = _optimizer(params, config)
    n, bs = int(x.shape[0]), config.batch_size
    epoch_loss = 0.0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)  # dropout and other in-model randomness
        order_gen = torch.Generator().manual_seed(config.seed)  # the batch order
        module.train()
        for epoch in range(1, config.epochs + 1):
            perm = torch.randperm(n, generator=order_gen)
            epoch_loss = 0.0
            for batch, start in enumerate(range(0, n, bs), start=1):
                idx = perm[start : start + bs]
                logits = _forward(module, x[idx])
                data_loss = F.binary_cross_entropy_with_logits(logits, y[idx])
                loss = (data_loss + 0.5 * mu * _sq_dist(params, anchor)) if mu else data_loss
                if not bool(torch.isfinite(loss)):
                    raise TrainingDiverged(
                        f"training diverged: loss is {float(loss.detach())} at epoch {epoch}, "
                        f"batch {batch} (optimizer {config.optimizer}, lr {config.lr}); "
                        "lower lr or scale the features; the weights from before fit are kept",
                        epoch=epoch,
                        batch=batch,
                    )
                opt.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                opt.step()
                epoch_loss += float(data_loss.detach()) * int(idx.shape[0])
    return epoch_loss / n


def _tensors(data: TrainData) -> tuple[torch.Tensor, torch.Tensor]:
    bad = np.setdiff1d(np.unique(data.labels), [0, 1])
    if bad.size:
        raise DataError(f"labels must be 0 or 1 for a binary classifier, got {bad.tolist()}")
    # torch.tensor copies: the caller's (possibly read-only) arrays are never shared
    return torch.tensor(data.features), torch.tensor(data.labels, dtype=torch.float32)


def _forward(module: nn.Module, xb: torch.Tensor) -> torch.Tensor:
    try:
        out = module(xb)
    except RuntimeError as exc:
        raise DataError(
            f"model {type(module).__name__} could not process features of shape "
            f"{tuple(xb.shape)}: {exc}"
        ) from exc
    if not isinstance(out, torch.Tensor):
        raise ConfigError(
            f"model {type(module).__name__} must return a tensor, got {type(out).__name__}"
        )
    b = xb.shape[0]
    if out.shape == (b, 1):
        out = out.squeeze(-1)
    if out.shape != (b,):
        raise ConfigError(
            f"model {type(module).__name__} must emit one logit per row: expected shape "
            f"({b},) or ({b}, 1), got {tuple(out.shape)}"
        )
    return out


def _sq_dist(params: list[nn.Parameter], anchor: list[torch.Tensor]) -> torch.Tensor:
    total = torch.zeros((), dtype=torch.float32)
    for p, a in zip(params, anchor, strict=True):
        total = total + (p - a).pow(2).sum()
    return total


def _optimizer(params: list[nn.Parameter], config: FitConfig) -> torch.optim.Optimizer:
    if config.optimizer is Optimizer.ADAM:
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(
        params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
