"""The public shapes of the REST API (responses and request bodies)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Public(BaseModel):
    """A response model (frozen)."""

    model_config = ConfigDict(frozen=True)


class FederationOut(Public):
    name: str
    departments: list[str]
    nodes_total: int
    nodes_live: int
    jobs_by_status: dict[str, int]


class NodeOut(Public):
    node_id: str
    department: str
    connected: bool
    revoked: bool
    enrolled_at: datetime
    last_seen_at: datetime | None


class DatasetOut(Public):
    node_id: str
    department: str
    name: str
    metadata: dict[str, Any]


class JobOut(Public):
    job_id: str
    status: str
    rounds_done: int
    rounds_total: int
    message: str
    purpose: str | None
    requires_approval: bool
    departments: list[str]
    created_at: datetime
    spec_yaml: str | None = None


class JobSubmit(BaseModel):
    """A job file's YAML text."""

    model_config = ConfigDict(extra="forbid")

    spec_yaml: str = Field(min_length=1, max_length=1_000_000)


class ParticipantOut(Public):
    node_id: str
    department: str
    num_samples: int


class RoundOut(Public):
    round_no: int
    attempt: int
    status: str
    started_at: datetime
    finished_at: datetime | None
    participants: list[ParticipantOut]
    dropped: list[dict[str, str]]
    metrics: dict[str, float]
    bytes_down: int
    bytes_up: int
    message: str
    version_id: str | None


class VersionOut(Public):
    version_id: str
    job_id: str
    number: int
    sha256: str
    parent_version_id: str | None
    round_no: int
    participants: list[ParticipantOut]
    strategy: str
    metrics: dict[str, float]
    department_metrics: dict[str, dict[str, float]]
    created_at: datetime


class LineageOut(Public):
    version: VersionOut
    lineage: list[str]


class ContributionOut(Public):
    """A department's part in one round: from the contribution ledger when it has the round
    (``source`` ``ledger``: weight, share, action, free-rider flag, LOO, Shapley, per node),
    else from the version's participants (``source`` ``samples``)."""

    version_id: str | None
    round_no: int
    department: str
    node_id: str | None
    num_samples: int
    sample_share: float
    source: str
    weight: float | None = None
    share: float | None = None
    action: str | None = None
    free_rider: str | None = None
    loo: float | None = None
    shapley: float | None = None
    metrics: dict[str, float]


class AuditOut(Public):
    seq: int
    at: datetime
    actor: str
    role: str
    action: str
    resource: str
    departments: list[str]
    detail: dict[str, Any]
    outcome: str
    hash: str


class VerifyOut(Public):
    ok: bool
    checked: int
    first_bad_seq: int | None
    problem: str | None
    message: str
    head_seq: int | None
    head_hash: str | None


class ApprovalOut(Public):
    job_id: str
    department: str
    purpose: str
    status: str
    requested_by: str
    requested_at: datetime
    decided_by: str | None
    decided_at: datetime | None
    reason: str | None


class ApproveIn(BaseModel):
    """The purpose the head approves (it must restate the one requested)."""

    model_config = ConfigDict(extra="forbid")

    purpose: str = Field(min_length=1, max_length=500)


class RevokeIn(BaseModel):
    """Why the approval is withdrawn."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=2000)


class PredictIn(BaseModel):
    """Feature rows (column -> value) and optionally the version to use (else the latest)."""

    model_config = ConfigDict(extra="forbid")

    rows: list[dict[str, str | int | float | bool | None]] = Field(min_length=1, max_length=10_000)
    version_id: str | None = None


class PredictOut(Public):
    job_id: str
    version_id: str
    predictions: list[list[float]]


class MeOut(Public):
    user_id: str
    display_name: str
    role: str
    department: str | None
    entitlements: list[str]
