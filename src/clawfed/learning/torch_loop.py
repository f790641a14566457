"""The training loop shared by the torch trainers: seeded mini-batch epochs with FedProx."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from clawfed.core import ConfigError, DataError, Weights
from clawfed.learning.convert import load_weights, weights_from_module
from clawfed.learning.trainer import FitConfig, Optimizer, TrainingDiverged

#: Maps a batch's model outputs and targets to the (scalar) data loss.
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class TorchModuleTrainer:
    """Holds an ``nn.Module`` for a torch trainer: weight snapshots and the thread setting.

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


@dataclass(frozen=True)
class LoopResult:
    """What ``fit_module`` measured: the last epoch's mean data loss and the FedProx term."""

    loss: float
    proximal_term: float | None  # mu/2·||w − w_global||² at the end; None when mu is 0


def fit_module(
    module: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    config: FitConfig,
    loss_fn: LossFn,
    *,
    advice: str,
) -> LoopResult:
    """Train ``module`` on ``(x, y)`` for ``config.epochs`` epochs of shuffled mini-batches.

    The loss is ``loss_fn`` plus the FedProx proximal term ``mu / 2 * ||w - w_global||^2``
    when ``config.proximal_mu`` > 0 (Li et al., MLSys 2020), ``w_global`` being the weights
    held at the start. Dropout draws from ``config.seed`` and the batch order from a separate
    generator seeded alike; torch's global random state is left untouched. Whatever goes
    wrong, the weights from before the call are restored.

    Parameters
    ----------
    advice
        What to tell the user when training diverges (ends the error message).

    Raises
    ------
    ConfigError
        When the model has nothing to train or does not emit one value per row.
    DataError
        When the model cannot process the features.
    TrainingDiverged
        When the loss or the weights become NaN or infinite.
    """
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        raise ConfigError(f"model {type(module).__name__} has no trainable parameter")
    before = {k: v.detach().clone() for k, v in module.state_dict().items()}
    anchor = [p.detach().clone() for p in params]
    try:
        loss = _train(module, params, anchor, x, y, config, loss_fn, advice)
        if not all(bool(torch.isfinite(p).all()) for p in params):
            raise TrainingDiverged(
                f"training diverged: weights became NaN or Inf in epoch {config.epochs} "
                f"(optimizer {config.optimizer}, lr {config.lr}); {advice}",
                epoch=config.epochs,
                batch=-(-int(x.shape[0]) // config.batch_size),
            )
    except BaseException:
        module.load_state_dict(before)  # never leave a half-trained or broken model
        raise
    proximal: float | None = None
    if config.proximal_mu:
        with torch.no_grad():
            proximal = 0.5 * config.proximal_mu * float(squared_distance(params, anchor))
    return LoopResult(loss, proximal)


def forward_batches(module: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """The module's outputs for every row of ``x`` (eval mode, no gradients), in batches."""
    module.eval()
    chunks: list[torch.Tensor] = []
    with torch.no_grad():
        for start in range(0, int(x.shape[0]), batch_size):
            chunks.append(forward_rows(module, x[start : start + batch_size]))
    if not chunks:
        return torch.zeros(0, dtype=torch.float32)
    return torch.cat(chunks)


def forward_rows(module: nn.Module, xb: torch.Tensor) -> torch.Tensor:
    """Run ``module`` on a batch and return one value per row, shape ``(batch,)``.

    Raises
    ------
    DataError
        When the model cannot process the features.
    ConfigError
        When the model does not return a tensor of shape ``(batch,)`` or ``(batch, 1)``.
    """
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


def squared_distance(params: list[nn.Parameter], anchor: list[torch.Tensor]) -> torch.Tensor:
    """``||params − anchor||²`` summed over all tensors (a differentiable scalar)."""
    total = torch.zeros((), dtype=torch.float32)
    for p, a in zip(params, anchor, strict=True):
        total = total + (p - a).pow(2).sum()
    return total


def build_optimizer(params: list[nn.Parameter], config: FitConfig) -> torch.optim.Optimizer:
    """The optimizer ``config`` names (Adam or SGD) with its lr, momentum and weight decay."""
    if config.optimizer is Optimizer.ADAM:
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(
        params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )


def _train(
    module: nn.Module,
    params: list[nn.Parameter],
    anchor: list[torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    config: FitConfig,
    loss_fn: LossFn,
    advice: str,
) -> float:
    """Run the epochs; return the mean data loss of the last one."""
    mu = config.proximal_mu
    opt = build_optimizer(params, config)
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
                data_loss = loss_fn(forward_rows(module, x[idx]), y[idx])
                loss = (
                    (data_loss + 0.5 * mu * squared_distance(params, anchor)) if mu else data_loss
                )
                if not bool(torch.isfinite(loss)):
                    raise TrainingDiverged(
                        f"training diverged: loss is {float(loss.detach())} at epoch {epoch}, "
                        f"batch {batch} (optimizer {config.optimizer}, lr {config.lr}); {advice}",
                        epoch=epoch,
                        batch=batch,
                    )
                opt.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                opt.step()
                epoch_loss += float(data_loss.detach()) * int(idx.shape[0])
    return epoch_loss / n
