"""``ModelRegistry``: immutable global model versions with their lineage and metrics."""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from clawfed.core.errors import NotFoundError, StoreError
from clawfed.governance._common import (
    JSONValue,
    json_object,
    metric_map,
    require_count,
    require_text,
    utc,
)
from clawfed.governance.artifacts import Artifact
from clawfed.governance.db import Database
from clawfed.governance.tables import JobRow, ModelVersionRow


@dataclass(frozen=True)
class Participant:
    """A node that contributed to a round, with the samples it trained on."""

    node_id: str
    department: str
    num_samples: int

    def __post_init__(self) -> None:
        require_text(self.node_id, "participant node_id", 128)
        require_text(self.department, f"participant {self.node_id}: department", 128)
        require_count(self.num_samples, f"participant {self.node_id}: num_samples", minimum=1)


@dataclass(frozen=True)
class StrategyInfo:
    """The aggregation strategy that produced a version, and its settings."""

    name: str
    settings: Mapping[str, JSONValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        require_text(self.name, "strategy name", 64)
        object.__setattr__(
            self,
            "settings",
            MappingProxyType(json_object(dict(self.settings), "strategy settings")),
        )


@dataclass(frozen=True)
class ModelVersion:
    """One global model: ``version_id`` is ``"<job name>@v<number>"``."""

    version_id: str
    job_id: str
    number: int
    sha256: str
    artifact_path: Path
    parent_version_id: str | None
    round_no: int
    participants: tuple[Participant, ...]
    strategy: StrategyInfo
    metrics: Mapping[str, float]
    department_metrics: Mapping[str, Mapping[str, float]]
    created_at: datetime

    @property
    def num_samples(self) -> int:
        """Total samples behind this version."""
        return sum(p.num_samples for p in self.participants)


def check_participants(participants: Sequence[Participant], what: str) -> tuple[Participant, ...]:
    """Return ``participants`` as a tuple after checking types and unique node ids."""
    out = tuple(participants)
    seen: set[str] = set()
    for p in out:
        if not isinstance(p, Participant):
            raise StoreError(f"{what}: participants must be Participant, got {type(p).__name__}")
        if p.node_id in seen:
            raise StoreError(f"{what}: node {p.node_id!r} is listed twice among participants")
        seen.add(p.node_id)
    return out


def participants_to_json(participants: Sequence[Participant]) -> builtins.list[dict[str, Any]]:
    """Participants as JSON objects ``{node_id, department, num_samples}``."""
    return [
        {"node_id": p.node_id, "department": p.department, "num_samples": p.num_samples}
        for p in participants
    ]


def participants_from_json(data: Any, where: str) -> tuple[Participant, ...]:
    """Participants read back from a JSON column; malformed data is a ``StoreError``."""
    try:
        return tuple(
            Participant(str(d["node_id"]), str(d["department"]), int(d["num_samples"]))
            for d in data
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise StoreError(f"{where}: stored participants are malformed: {exc!r}") from exc


def department_metric_map(
    value: Mapping[str, Mapping[str, float]], what: str
) -> dict[str, dict[str, float]]:
    """Check per-department metrics: department name -> metric name -> finite value."""
    if not isinstance(value, Mapping):
        raise StoreError(f"{what} must map department to metrics, got {type(value).__name__}")
    return {
        require_text(d, f"{what}: department", 128): metric_map(m, f"{what} of {d}")
        for d, m in value.items()
    }


class ModelRegistry:
    """Read model versions; :meth:`register` adds one inside a caller's transaction."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def register(
        self,
        session: Session,
        *,
        job_id: str,
        round_no: int,
        artifact: Artifact,
        participants: Sequence[Participant],
        strategy: StrategyInfo,
        metrics: Mapping[str, float],
        department_metrics: Mapping[str, Mapping[str, float]],
        created_at: datetime,
    ) -> ModelVersion:
        """Add the next version of ``job_id`` in ``session`` (committed by the caller).

        Its number is one more than the job's latest, whose id becomes the parent.
        """
        require_count(round_no, "round_no", minimum=1)
        if not isinstance(artifact, Artifact):
            raise StoreError(f"artifact must be an Artifact, got {type(artifact).__name__}")
        if not isinstance(strategy, StrategyInfo):
            raise StoreError(f"strategy must be a StrategyInfo, got {type(strategy).__name__}")
        people = check_participants(participants, f"version of job {job_id!r}")
        if not people:
            raise StoreError(f"a version of job {job_id!r} needs at least one participant")
        job = session.get(JobRow, job_id)
        if job is None:
            raise NotFoundError(f"job {job_id!r} does not exist")
        last = session.scalar(
            select(func.max(ModelVersionRow.number)).where(ModelVersionRow.job_id == job_id)
        )
        number = (last or 0) + 1
        row = ModelVersionRow(
            version_id=f"{job.name}@v{number}",
            job_id=job_id,
            number=number,
            sha256=artifact.sha256,
            artifact_path=str(artifact.path),
            parent_version_id=f"{job.name}@v{last}" if last else None,
            round_no=round_no,
            participants=participants_to_json(people),
            strategy_name=strategy.name,
            strategy_settings=dict(strategy.settings),
            metrics=metric_map(metrics, "version metrics"),
            department_metrics=department_metric_map(department_metrics, "department metrics"),
            created_at=utc(created_at, "version created_at"),
        )
        session.add(row)
        session.flush()
        return _version(row)

    def get(self, version_id: str) -> ModelVersion:
        """The version ``version_id`` (e.g. ``"credit-risk@v3"``); ``NotFoundError`` if absent."""
        with self._db.session() as s:
            row = s.get(ModelVersionRow, version_id)
            if row is None:
                raise NotFoundError(f"model version {version_id!r} does not exist")
            return _version(row)

    def latest(self, job_id: str) -> ModelVersion:
        """The newest version of ``job_id``; ``NotFoundError`` if it has none yet."""
        with self._db.session() as s:
            row = s.scalar(
                select(ModelVersionRow)
                .where(ModelVersionRow.job_id == job_id)
                .order_by(ModelVersionRow.number.desc())
                .limit(1)
            )
            if row is None:
                if s.get(JobRow, job_id) is None:
                    raise NotFoundError(f"job {job_id!r} does not exist")
                raise NotFoundError(f"job {job_id!r} has no model version yet")
            return _version(row)

    def list(self, job_id: str | None = None) -> builtins.list[ModelVersion]:
        """Every version (of ``job_id`` if given), ordered by job and number."""
        stmt = select(ModelVersionRow).order_by(ModelVersionRow.job_id, ModelVersionRow.number)
        if job_id is not None:
            stmt = stmt.where(ModelVersionRow.job_id == job_id)
        with self._db.session() as s:
            return [_version(r) for r in s.scalars(stmt)]

    def lineage(self, version_id: str) -> builtins.list[ModelVersion]:
        """``version_id`` and its ancestors, newest first."""
        out: builtins.list[ModelVersion] = []
        with self._db.session() as s:
            current: str | None = version_id
            while current is not None:
                row = s.get(ModelVersionRow, current)
                if row is None:
                    raise NotFoundError(f"model version {current!r} does not exist")
                out.append(_version(row))
                current = row.parent_version_id
        return out


def _version(row: ModelVersionRow) -> ModelVersion:
    where = f"model version {row.version_id!r}"
    return ModelVersion(
        version_id=row.version_id,
        job_id=row.job_id,
        number=row.number,
        sha256=row.sha256,
        artifact_path=Path(row.artifact_path),
        parent_version_id=row.parent_version_id,
        round_no=row.round_no,
        participants=participants_from_json(row.participants, where),
        strategy=StrategyInfo(row.strategy_name, row.strategy_settings),
        metrics=MappingProxyType(dict(row.metrics)),
        department_metrics=MappingProxyType(
            {d: MappingProxyType(dict(m)) for d, m in row.department_metrics.items()}
        ),
        created_at=row.created_at,
    )
