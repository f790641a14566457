"""Aggregation strategies behind one ``Strategy`` protocol, and streaming aggregators."""

from clawfed.aggregation.base import Aggregator, ConfigValue, FitInstruction, Strategy
from clawfed.aggregation.fedavg import FedAvg, WeightedMeanAggregator

__all__ = [
    "Aggregator",
    "ConfigValue",
    "FedAvg",
    "FitInstruction",
    "Strategy",
    "WeightedMeanAggregator",
]
