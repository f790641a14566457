"""``clawfed.aggregation`` exports exactly its public API."""

from __future__ import annotations

import clawfed.aggregation as agg


def test_exported_members() -> None:
    assert set(agg.__all__) == {
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
    }
    assert len(agg.__all__) == len(set(agg.__all__))
    for name in agg.__all__:
        assert getattr(agg, name) is not None, name
