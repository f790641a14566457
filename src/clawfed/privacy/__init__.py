"""Privacy: secure aggregation, differential privacy, PII redaction and consent.

Torch-based DP-SGD lives in ``clawfed.privacy.dpsgd`` and is imported explicitly, so the
coordinator can use this package without importing torch or Opacus.

Submodules load on first use (PEP 562), so importing one part (say the secure-aggregation
server) does not pull in ``dp_accounting`` and SciPy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clawfed.privacy.accountant import (
        AccountantKind,
        PrivacyBudget,
        calibrate_noise,
        epsilon_spent,
    )
    from clawfed.privacy.consent import ConsentError, ConsentRecord, ConsentRegistry
    from clawfed.privacy.dp import (
        DP_AGGREGATE_ID,
        DPFedAvg,
        DPMeanAggregator,
        NoiseMode,
        client_noise_std,
        clip_update,
        gaussian_noise,
        privatize_update,
    )
    from clawfed.privacy.errors import (
        BudgetExceeded,
        SecAggError,
        SecAggFailure,
        ShamirError,
    )
    from clawfed.privacy.pii import PLACEHOLDERS, PiiFinding, PiiKind, Redaction, find_pii, redact
    from clawfed.privacy.quantize import FixedPoint
    from clawfed.privacy.secagg_client import ClientPhase, SecAggClient
    from clawfed.privacy.secagg_config import SecAggConfig, secagg_plus_degree
    from clawfed.privacy.secagg_messages import (
        AdvertiseKeys,
        ControlMessage,
        EncryptedShare,
        KeyDirectory,
        MaskedInput,
        RevealedShare,
        ShareInbox,
        ShareKeys,
        UnmaskRequest,
        UnmaskResponse,
        decode_message,
        encode_message,
    )
    from clawfed.privacy.secagg_server import SecAggResult, SecAggServer, ServerPhase

_WHERE: dict[str, str] = {
    "AccountantKind": "clawfed.privacy.accountant",
    "AdvertiseKeys": "clawfed.privacy.secagg_messages",
    "BudgetExceeded": "clawfed.privacy.errors",
    "ClientPhase": "clawfed.privacy.secagg_client",
    "ConsentError": "clawfed.privacy.consent",
    "ConsentRecord": "clawfed.privacy.consent",
    "ConsentRegistry": "clawfed.privacy.consent",
    "ControlMessage": "clawfed.privacy.secagg_messages",
    "DPFedAvg": "clawfed.privacy.dp",
    "DPMeanAggregator": "clawfed.privacy.dp",
    "DP_AGGREGATE_ID": "clawfed.privacy.dp",
    "EncryptedShare": "clawfed.privacy.secagg_messages",
    "FixedPoint": "clawfed.privacy.quantize",
    "KeyDirectory": "clawfed.privacy.secagg_messages",
    "MaskedInput": "clawfed.privacy.secagg_messages",
    "NoiseMode": "clawfed.privacy.dp",
    "PLACEHOLDERS": "clawfed.privacy.pii",
    "PiiFinding": "clawfed.privacy.pii",
    "PiiKind": "clawfed.privacy.pii",
    "PrivacyBudget": "clawfed.privacy.accountant",
    "Redaction": "clawfed.privacy.pii",
    "RevealedShare": "clawfed.privacy.secagg_messages",
    "SecAggClient": "clawfed.privacy.secagg_client",
    "SecAggConfig": "clawfed.privacy.secagg_config",
    "SecAggError": "clawfed.privacy.errors",
    "SecAggFailure": "clawfed.privacy.errors",
    "SecAggResult": "clawfed.privacy.secagg_server",
    "SecAggServer": "clawfed.privacy.secagg_server",
    "ServerPhase": "clawfed.privacy.secagg_server",
    "ShamirError": "clawfed.privacy.errors",
    "ShareInbox": "clawfed.privacy.secagg_messages",
    "ShareKeys": "clawfed.privacy.secagg_messages",
    "UnmaskRequest": "clawfed.privacy.secagg_messages",
    "UnmaskResponse": "clawfed.privacy.secagg_messages",
    "calibrate_noise": "clawfed.privacy.accountant",
    "client_noise_std": "clawfed.privacy.dp",
    "clip_update": "clawfed.privacy.dp",
    "decode_message": "clawfed.privacy.secagg_messages",
    "encode_message": "clawfed.privacy.secagg_messages",
    "epsilon_spent": "clawfed.privacy.accountant",
    "find_pii": "clawfed.privacy.pii",
    "gaussian_noise": "clawfed.privacy.dp",
    "privatize_update": "clawfed.privacy.dp",
    "redact": "clawfed.privacy.pii",
    "secagg_plus_degree": "clawfed.privacy.secagg_config",
}

__all__ = [
    "DP_AGGREGATE_ID",
    "PLACEHOLDERS",
    "AccountantKind",
    "AdvertiseKeys",
    "BudgetExceeded",
    "ClientPhase",
    "ConsentError",
    "ConsentRecord",
    "ConsentRegistry",
    "ControlMessage",
    "DPFedAvg",
    "DPMeanAggregator",
    "EncryptedShare",
    "FixedPoint",
    "KeyDirectory",
    "MaskedInput",
    "NoiseMode",
    "PiiFinding",
    "PiiKind",
    "PrivacyBudget",
    "Redaction",
    "RevealedShare",
    "SecAggClient",
    "SecAggConfig",
    "SecAggError",
    "SecAggFailure",
    "SecAggResult",
    "SecAggServer",
    "ServerPhase",
    "ShamirError",
    "ShareInbox",
    "ShareKeys",
    "UnmaskRequest",
    "UnmaskResponse",
    "calibrate_noise",
    "client_noise_std",
    "clip_update",
    "decode_message",
    "encode_message",
    "epsilon_spent",
    "find_pii",
    "gaussian_noise",
    "privatize_update",
    "redact",
    "secagg_plus_degree",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'clawfed.privacy' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
