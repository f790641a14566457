"""Aggregation strategies behind one ``Strategy`` protocol, and streaming aggregators."""

from clawfed.aggregation.base import Aggregator, ConfigValue, FitInstruction, Strategy
from clawfed.aggregation.delta import (
    BufferedAggregator,
    DeltaAggregator,
    DeltaRule,
    WeightedMeanDelta,
    apply_delta,
)
from clawfed.aggregation.errors import TooFewUpdates
from clawfed.aggregation.fedadagrad import FedAdagradSettings
from clawfed.aggregation.fedadam import FedAdamSettings
from clawfed.aggregation.fedavg import FedAvg, WeightedMeanAggregator
from clawfed.aggregation.fedavgm import FedAvgMSettings
from clawfed.aggregation.fedopt import ServerOptAggregator, ServerOptStrategy
from clawfed.aggregation.fedprox import PROXIMAL_MU_KEY, FedProx, FedProxSettings
from clawfed.aggregation.fedyogi import FedYogiSettings
from clawfed.aggregation.krum import Krum, KrumSettings, MultiKrumSettings, krum_select
from clawfed.aggregation.median import CoordinateMedian, MedianSettings, median_rule
from clawfed.aggregation.norm_bounding import (
    NormBounding,
    NormBoundingAggregator,
    NormBoundingSettings,
)
from clawfed.aggregation.optimizers import (
    AdaptiveKind,
    AdaptiveOptimizer,
    MomentumOptimizer,
    ServerOptimizer,
)
from clawfed.aggregation.registry import (
    FedAvgSettings,
    build_strategy,
    known_strategies,
    settings_model,
)
from clawfed.aggregation.settings import StrategySettings
from clawfed.aggregation.state import ArrayStateful
from clawfed.aggregation.trimmed_mean import TrimmedMean, TrimmedMeanSettings

__all__ = [
    "PROXIMAL_MU_KEY",
    "AdaptiveKind",
    "AdaptiveOptimizer",
    "Aggregator",
    "ArrayStateful",
    "BufferedAggregator",
    "ConfigValue",
    "CoordinateMedian",
    "DeltaAggregator",
    "DeltaRule",
    "FedAdagradSettings",
    "FedAdamSettings",
    "FedAvg",
    "FedAvgMSettings",
    "FedAvgSettings",
    "FedProx",
    "FedProxSettings",
    "FedYogiSettings",
    "FitInstruction",
    "Krum",
    "KrumSettings",
    "MedianSettings",
    "MomentumOptimizer",
    "MultiKrumSettings",
    "NormBounding",
    "NormBoundingAggregator",
    "NormBoundingSettings",
    "ServerOptAggregator",
    "ServerOptStrategy",
    "ServerOptimizer",
    "Strategy",
    "StrategySettings",
    "TooFewUpdates",
    "TrimmedMean",
    "TrimmedMeanSettings",
    "WeightedMeanAggregator",
    "WeightedMeanDelta",
    "apply_delta",
    "build_strategy",
    "known_strategies",
    "krum_select",
    "median_rule",
    "settings_model",
]
