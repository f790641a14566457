"""Chat notices: the events a chat channel announces, as validated frozen dataclasses."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from clawfed.chat.errors import ChatError
from clawfed.chat.nlu.lexicon import default_lexicon

_HEX = re.compile(r"^[0-9a-f]{8,128}$")


class NoticeError(ChatError):
    """A notification was built from invalid values (empty name, NaN metric …)."""


def _texts(n: object, *names: str) -> None:
    """Each named attribute of ``n`` must be a non-empty string (None allowed if optional)."""
    for name in names:
        value = getattr(n, name)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise NoticeError(f"{type(n).__name__}.{name} must be non-empty text, got {value!r}")


def _counts(n: object, *names: str) -> None:
    """Each named attribute of ``n`` must be an integer >= 1 (None allowed if optional)."""
    for name in names:
        value = getattr(n, name)
        if value is not None and (isinstance(value, bool) or value < 1):
            raise NoticeError(f"{type(n).__name__}.{name} must be >= 1, got {value!r}")


def _seconds(n: object, name: str) -> None:
    value = getattr(n, name)
    if value is not None and (not math.isfinite(value) or value < 0):
        raise NoticeError(f"{type(n).__name__}.{name} must be finite and >= 0, got {value!r}")


@dataclass(frozen=True)
class JobStarted:
    """A job began training with these departments."""

    job: str
    departments: tuple[str, ...]
    rounds: int

    def __post_init__(self) -> None:
        _texts(self, "job")
        _counts(self, "rounds")
        if not self.departments:
            raise NoticeError(f"job {self.job!r}: the list of departments must not be empty")


@dataclass(frozen=True)
class MetricChange:
    """One department's metric after a round; ``previous`` is the value one round before.

    ``metric`` is a lexicon key ("accuracy"); ratio metrics hold fractions in [0, 1] and
    change in percentage points, other metrics change relative to ``previous``.
    """

    department: str
    metric: str
    value: float
    previous: float | None = None

    def __post_init__(self) -> None:
        _texts(self, "department", "metric")
        info = default_lexicon().find_metric(self.metric)
        for v, what in ((self.value, "value"), (self.previous, "previous")):
            if v is None:
                continue
            if not math.isfinite(v):
                raise NoticeError(f"{self.department} {self.metric} {what} must be finite, got {v}")
            if info is not None and info.ratio and not 0.0 <= v <= 1.0:
                raise NoticeError(
                    f"{self.department}: {self.metric} is a ratio and must lie in [0, 1], "
                    f"got {what}={v}"
                )


@dataclass(frozen=True)
class RoundFinished:
    """A round of a job finished; one :class:`MetricChange` per department."""

    job: str
    round: int
    results: tuple[MetricChange, ...]
    total_rounds: int | None = None

    def __post_init__(self) -> None:
        _texts(self, "job")
        _counts(self, "round", "total_rounds")
        if not self.results:
            raise NoticeError(f"job {self.job!r} round {self.round}: results must not be empty")


@dataclass(frozen=True)
class NodeJoined:
    """A department's node joined the federation."""

    department: str
    node_id: str

    def __post_init__(self) -> None:
        _texts(self, "department", "node_id")


@dataclass(frozen=True)
class NodeLost:
    """A node stopped answering; ``silent_seconds`` since its last heartbeat, if known."""

    department: str
    node_id: str
    silent_seconds: float | None = None

    def __post_init__(self) -> None:
        _texts(self, "department", "node_id")
        _seconds(self, "silent_seconds")


@dataclass(frozen=True)
class NodeBack:
    """A lost node is back; ``offline_seconds`` how long it was away, if known."""

    department: str
    node_id: str
    offline_seconds: float | None = None

    def __post_init__(self) -> None:
        _texts(self, "department", "node_id")
        _seconds(self, "offline_seconds")


@dataclass(frozen=True)
class VersionPublished:
    """A new global model version; ``synced`` the departments that already hold it."""

    job: str
    version: int
    digest: str
    synced: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _texts(self, "job")
        _counts(self, "version")
        if not _HEX.match(self.digest):
            raise NoticeError(f"digest must be a lower-case hex sha256, got {self.digest!r}")


@dataclass(frozen=True)
class MetricDropped:
    """Anomaly: a department's metric got worse than the job allows."""

    job: str
    change: MetricChange
    round: int

    @property
    def department(self) -> str:
        """The department whose metric dropped."""
        return self.change.department

    def __post_init__(self) -> None:
        _texts(self, "job")
        _counts(self, "round")
        if self.change.previous is None:
            raise NoticeError("a metric drop needs the previous value, got previous=None")


@dataclass(frozen=True)
class UpdateRefused:
    """Anomaly: a department's update was rejected; ``reason`` a RejectReason or free text."""

    job: str
    department: str
    reason: str
    round: int

    def __post_init__(self) -> None:
        _texts(self, "job", "department", "reason")
        _counts(self, "round")


@dataclass(frozen=True)
class NodeDropped:
    """Anomaly: a node dropped out of a running round."""

    job: str
    department: str
    node_id: str
    round: int
    reason: str | None = None

    def __post_init__(self) -> None:
        _texts(self, "job", "department", "node_id", "reason")
        _counts(self, "round")


@dataclass(frozen=True)
class ApprovalRequested:
    """Someone asks to use a department's data for a job; its head must approve."""

    job: str
    department: str
    requester: str
    purpose: str

    def __post_init__(self) -> None:
        _texts(self, "job", "department", "requester", "purpose")


@dataclass(frozen=True)
class Suspect:
    """A department whose update deviated most in a round whose metric fell."""

    department: str
    cosine: float
    norm_ratio: float
    action: str  # kept, downweighted or rejected (the aggregation helper's UpdateAction)

    def __post_init__(self) -> None:
        _texts(self, "department", "action")
        if not (math.isfinite(self.cosine) and math.isfinite(self.norm_ratio)):
            raise NoticeError(
                f"suspect {self.department}: cosine and norm_ratio must be finite, "
                f"got {self.cosine!r} and {self.norm_ratio!r}"
            )


@dataclass(frozen=True)
class RoundDeviations:
    """Anomaly: the round's combined metric fell by more than the job allows, and who deviated.

    Built from the engine's ``anomaly`` event with ``from_event``.
    """

    job: str
    round: int
    metric: str
    previous: float
    current: float
    suspects: tuple[Suspect, ...]

    @property
    def department(self) -> str:
        """The most deviating department."""
        return self.suspects[0].department

    def __post_init__(self) -> None:
        _texts(self, "job", "metric")
        _counts(self, "round")
        if not self.suspects:
            raise NoticeError("RoundDeviations needs at least one suspect")

    @classmethod
    def from_event(cls, data: Mapping[str, Any]) -> RoundDeviations:
        """The notice of an ``anomaly`` event (``coordinator.round_extras.anomaly_event``)."""
        suspects = tuple(
            Suspect(str(d["department"]), float(d["cosine"]), float(d["norm_ratio"]),
                    str(d["action"]))
            for d in data["suspects"]
        )  # fmt: skip
        return cls(
            str(data["job_id"]), int(data["round"]), str(data["metric"]),
            float(data["previous"]), float(data["current"]), suspects,
        )  # fmt: skip


Anomaly = MetricDropped | UpdateRefused | NodeDropped | RoundDeviations
Notice = (
    (JobStarted | RoundFinished | NodeJoined | NodeLost | NodeBack | VersionPublished)
    | Anomaly
    | ApprovalRequested
)
