"""Local training on a node: the ``Trainer`` protocol and its records (torch-free imports).

The torch-based modules are imported explicitly where they are needed, so that the
coordinator can use these records without importing torch::

    from clawfed.learning.torch_trainer import TorchTabularTrainer
    from clawfed.learning.models import build_model, model_from_spec
    from clawfed.learning.export import export_model
"""

from clawfed.learning.trainer import (
    EvalConfig,
    EvalResult,
    FitConfig,
    FitResult,
    Optimizer,
    SettingValue,
    TrainData,
    Trainer,
    TrainingDiverged,
)

__all__ = [
    "EvalConfig",
    "EvalResult",
    "FitConfig",
    "FitResult",
    "Optimizer",
    "SettingValue",
    "TrainData",
    "Trainer",
    "TrainingDiverged",
]
