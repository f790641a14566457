"""Typed records shared by every part of clawfed: weights, updates, metrics, ids, errors."""

from clawfed.core.errors import (
    ClawfedError,
    ConfigError,
    DataError,
    JobError,
    NotFoundError,
    PayloadError,
    PeerRefused,
    ProtocolVersionMismatch,
    RefusalReason,
    RejectReason,
    SecurityError,
    StoreError,
    UpdateRejected,
    WireError,
)
from clawfed.core.records import Metrics, NodeInfo, Update, validate_metrics
from clawfed.core.weights import TensorSpec, Weights

__all__ = [
    "ClawfedError",
    "ConfigError",
    "DataError",
    "JobError",
    "Metrics",
    "NodeInfo",
    "NotFoundError",
    "PayloadError",
    "PeerRefused",
    "ProtocolVersionMismatch",
    "RefusalReason",
    "RejectReason",
    "SecurityError",
    "StoreError",
    "TensorSpec",
    "Update",
    "UpdateRejected",
    "Weights",
    "WireError",
    "validate_metrics",
]
