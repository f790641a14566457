"""``TorchTabularTrainer``: trains a binary-classifier ``nn.Module`` on tabular data."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from clawfed.core import DataError
from clawfed.learning.metrics import binary_metrics
from clawfed.learning.torch_loop import TorchModuleTrainer, fit_module, forward_batches
from clawfed.learning.trainer import EvalConfig, EvalResult, FitConfig, FitResult, TrainData

_ADVICE = "lower lr or scale the features; the weights from before fit are kept"


class TorchTabularTrainer(TorchModuleTrainer):
    """A ``Trainer`` for any ``nn.Module`` that maps ``(batch, n_features)`` to one logit per row.

    Training minimises binary cross-entropy on the logits, plus the FedProx proximal term
    ``mu / 2 * ||w - w_global||^2`` when ``FitConfig.proximal_mu`` > 0 (Li et al., MLSys 2020),
    where ``w_global`` are the weights held when ``fit`` starts. Runs on the CPU.

    Given the same starting weights, data, config and thread count, ``fit`` produces
    bit-identical weights: dropout draws from ``config.seed`` and the batch order from a
    separate ``torch.Generator`` seeded alike; torch's global random state is left untouched.
    The parameters (``module``, ``num_threads``) are those of ``TorchModuleTrainer``.
    """

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
        result = fit_module(
            self._module, x, y, config, F.binary_cross_entropy_with_logits, advice=_ADVICE
        )
        metrics = {"loss": result.loss}
        if result.proximal_term is not None:
            metrics["proximal_term"] = result.proximal_term
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
        logits = forward_batches(self._module, x, config.batch_size)
        probs = torch.sigmoid(logits.to(torch.float64)).numpy()
        report = binary_metrics(probs, y.numpy().astype(np.int64), config.threshold)
        return EvalResult(data.num_samples, report.values, report.notes)


def _tensors(data: TrainData) -> tuple[torch.Tensor, torch.Tensor]:
    bad = np.setdiff1d(np.unique(data.labels), [0, 1])
    if bad.size:
        raise DataError(f"labels must be 0 or 1 for a binary classifier, got {bad.tolist()}")
    # torch.tensor copies: the caller's (possibly read-only) arrays are never shared
    return torch.tensor(data.features), torch.tensor(data.labels, dtype=torch.float32)
