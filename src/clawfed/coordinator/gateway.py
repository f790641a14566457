"""The seam between the round engine and the nodes: send a task, await its outcome."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Protocol

from clawfed.aggregation import ConfigValue
from clawfed.core import ClawfedError, Metrics, NodeInfo, TensorSpec, Weights


class TaskKind(StrEnum):
    """What a node is asked to do."""

    FIT = "fit"
    EVALUATE = "evaluate"
    INIT = "init"
    STATS = "stats"
    QUERY = "query"  # a federated query: per-group aggregates of the model's error, no rows
    # secure aggregation, one kind per phase (coordinator/secure_round.py)
    SECAGG_ADVERTISE = "secagg_advertise"
    SECAGG_SHARE = "secagg_share"
    SECAGG_MASK = "secagg_mask"
    SECAGG_UNMASK = "secagg_unmask"


class FailureCode(StrEnum):
    """Why a task produced no usable outcome (besides a rejected update)."""

    DISCONNECTED = "disconnected"
    NODE_ERROR = "node_error"
    CANCELLED = "cancelled"
    NOT_CONNECTED = "not_connected"
    REFUSED = "refused"


class TaskFailed(ClawfedError):
    """A node could not complete a task; ``code`` says why, ``detail`` explains."""

    def __init__(self, node_id: str, code: str, detail: str) -> None:
        super().__init__(f"node {node_id}: {code}: {detail}")
        self.node_id = node_id
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class TaskRequest:
    """One task for one node. ``expected`` is the spec the returned weights must have."""

    task_id: str
    job_id: str
    round_no: int
    kind: TaskKind
    deadline_unix: float
    config: Mapping[str, ConfigValue] = field(default_factory=lambda: MappingProxyType({}))
    expected: tuple[TensorSpec, ...] | None = None
    #: Called with the validated outcome the moment it is complete, before anything else is
    #: received; what it returns is what ``run_task`` returns (UpdateRejected or TaskFailed
    #: it raises fail the task). The round engine folds each update in here, so an update's
    #: buffer is free again before the next update may take one.
    on_outcome: Callable[[TaskOutcome], TaskOutcome] | None = field(
        default=None, compare=False, repr=False
    )


@dataclass(frozen=True)
class TaskOutcome:
    """A node's successful answer. ``weights`` is the delta for fit, the model for init."""

    node_id: str
    num_samples: int
    metrics: Metrics
    weights: Weights | None
    bytes_up: int = 0


def deliver(request: TaskRequest, outcome: TaskOutcome) -> TaskOutcome:
    """``outcome`` passed through the request's ``on_outcome`` (unchanged without one)."""
    return outcome if request.on_outcome is None else request.on_outcome(outcome)


class OutboundModel(Protocol):
    """Global weights prepared once per round for sending to every node."""

    @property
    def weights(self) -> Weights:
        """The weights being sent."""
        ...

    @property
    def nbytes(self) -> int:
        """Bytes one node receives for this model."""
        ...


class NodeGateway(Protocol):
    """How the round engine reaches nodes; gRPC sessions in production, memory in tests."""

    def live_nodes(self) -> list[NodeInfo]:
        """Nodes with an open session now."""
        ...

    async def wait_for_nodes(
        self, wanted: Sequence[str] | None, count: int, timeout_s: float
    ) -> list[NodeInfo]:
        """Wait until ``count`` of ``wanted`` (or of all nodes) are live, or the timeout."""
        ...

    def prepare(self, weights: Weights) -> OutboundModel:
        """Encode ``weights`` once so sending them to many nodes costs no re-encoding."""
        ...

    async def run_task(
        self, node_id: str, request: TaskRequest, model: OutboundModel | None
    ) -> TaskOutcome:
        """Send the task (and model) and await the validated outcome.

        Raises ``TaskFailed`` or ``UpdateRejected``.
        """
        ...

    async def cancel(self, node_id: str, task_id: str, reason: str) -> None:
        """Tell the node to abandon a task (best effort)."""
        ...


def validate_returned(outcome_weights: Weights, expected: Sequence[TensorSpec] | None) -> None:
    """Check returned weights against the expected spec and for NaN/Inf."""
    if expected is not None:
        outcome_weights.check_conforms(expected)
    outcome_weights.check_finite()
