"""The coordinator's persistent store: nodes, audit chain, jobs, rounds and model versions."""

from clawfed.governance._common import JSONValue
from clawfed.governance.artifacts import Artifact, ArtifactStore
from clawfed.governance.audit import AuditLog, AuditRecord
from clawfed.governance.audit_chain import (
    GENESIS_HASH,
    ChainHead,
    VerifyProblem,
    VerifyResult,
    chain_hash,
)
from clawfed.governance.db import Base, Database, sqlite_url
from clawfed.governance.jobs import CompletedRound, JobRecord, JobStatus, JobStore
from clawfed.governance.nodes import NodeRecord, NodeRegistry
from clawfed.governance.registry import ModelRegistry, ModelVersion, Participant, StrategyInfo
from clawfed.governance.rounds import (
    DroppedNode,
    RejectedNode,
    RoundOutcome,
    RoundRecord,
    RoundStatus,
)

__all__ = [
    "GENESIS_HASH",
    "Artifact",
    "ArtifactStore",
    "AuditLog",
    "AuditRecord",
    "Base",
    "ChainHead",
    "CompletedRound",
    "Database",
    "DroppedNode",
    "JSONValue",
    "JobRecord",
    "JobStatus",
    "JobStore",
    "ModelRegistry",
    "ModelVersion",
    "NodeRecord",
    "NodeRegistry",
    "Participant",
    "RejectedNode",
    "RoundOutcome",
    "RoundRecord",
    "RoundStatus",
    "StrategyInfo",
    "VerifyProblem",
    "VerifyResult",
    "chain_hash",
    "sqlite_url",
]
