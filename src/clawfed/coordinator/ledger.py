"""``SqlLedger``: the round engine's persistence over the SQL store and artifact folder."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from clawfed.aggregation.contribution import ContributionRecord
from clawfed.coordinator.jobspec import parse_job
from clawfed.coordinator.round_extras import contribution_entries, contribution_records
from clawfed.coordinator.round_records import Progress, RoundReport
from clawfed.core import NotFoundError, StoreError, Weights
from clawfed.governance.artifacts import ArtifactStore
from clawfed.governance.db import Database
from clawfed.governance.jobs import JobStore
from clawfed.governance.registry import ModelRegistry, Participant, StrategyInfo
from clawfed.governance.rounds import (
    ContributionStore,
    DroppedNode,
    RejectedNode,
    RoundOutcome,
)

_INITIAL = "initial.json"
_PREP = "prep.json"
_ARRAYS_KEY = "_state_arrays"


def _write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".initial.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class SqlLedger:
    """Rounds, versions and strategy state in SQL; weights as safetensors artifacts."""

    def __init__(self, db: Database, artifacts_root: Path) -> None:
        self._jobs = JobStore(db)
        self._registry = ModelRegistry(db)
        self._contributions = ContributionStore(db)
        self._root = artifacts_root

    def _store(self, job_id: str) -> ArtifactStore:
        return ArtifactStore(self._root / job_id)

    def progress(self, job_id: str) -> Progress:
        job = self._jobs.get(job_id)
        store = self._store(job_id)
        if job.rounds_done > 0:
            latest = self._registry.latest(job_id)
            weights = store.load(latest.artifact_path, latest.sha256)
            state = dict(job.strategy_state)
            arrays = None
            ref = state.pop(_ARRAYS_KEY, None)
            if isinstance(ref, dict):
                arrays = store.load(Path(str(ref["path"])), str(ref["sha256"]))
            return Progress(job.rounds_done, weights, state, arrays, self._prep(job_id))
        marker = store.root / _INITIAL
        if marker.is_file():
            try:
                info = json.loads(marker.read_text(encoding="utf-8"))
                weights = store.load(Path(info["path"]), str(info["sha256"]))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise StoreError(f"job {job_id}: unreadable initial model record: {exc}") from exc
            return Progress(0, weights, dict(job.strategy_state), None, self._prep(job_id))
        return Progress(0, None, dict(job.strategy_state), None, self._prep(job_id))

    def save_initial(self, job_id: str, weights: Weights, source_node: str) -> None:
        store = self._store(job_id)
        artifact = store.save(weights, "initial", {"job": job_id, "source_node": source_node})
        _write_json_atomic(
            store.root / _INITIAL,
            {
                "path": str(artifact.path),
                "sha256": artifact.sha256,
                "source_node": source_node,
            },
        )

    def save_prep(self, job_id: str, prep: Mapping[str, Any]) -> None:
        store = self._store(job_id)
        store.root.mkdir(parents=True, exist_ok=True)
        _write_json_atomic(store.root / _PREP, prep)

    def _prep(self, job_id: str) -> dict[str, Any]:
        path = self._store(job_id).root / _PREP
        if not path.is_file():
            return {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise StoreError(f"job {job_id}: unreadable {path}: {exc}") from exc
        if not isinstance(data, dict):
            raise StoreError(f"job {job_id}: {path} must hold a JSON object")
        return data

    def complete_round(
        self,
        report: RoundReport,
        weights: Weights,
        strategy_state: Mapping[str, Any],
        state_arrays: Weights | None = None,
    ) -> str:
        job = self._jobs.get(report.job_id)
        state = dict(strategy_state)
        if state_arrays is not None and len(state_arrays) > 0:
            saved = self._store(report.job_id).save(
                state_arrays, f"strategy-state-{report.round_no:05d}", {"job": report.job_id}
            )
            state[_ARRAYS_KEY] = {"path": str(saved.path), "sha256": saved.sha256}
        spec = parse_job(job.spec_yaml, source=f"stored job {report.job_id}")
        artifact = self._store(report.job_id).save(
            weights,
            f"round-{report.round_no:05d}",
            {"job": report.job_id, "round": str(report.round_no)},
        )
        per_department: dict[str, dict[str, float]] = {}
        for p in report.participants:
            per_department[p.department or p.node_id] = dict(p.metrics)
        outcome = RoundOutcome(
            round_no=report.round_no,
            started_at=report.started_at,
            finished_at=report.finished_at,
            participants=[
                Participant(p.node_id, p.department or p.node_id, p.num_samples)
                for p in report.participants
            ],
            metrics=dict(report.metrics),
            department_metrics=per_department,
            dropped=[DroppedNode(d.node_id, f"{d.reason}: {d.detail}") for d in report.dropped],
            rejected=[RejectedNode(r.node_id, r.reason, r.detail) for r in report.rejected],
            bytes_down=report.bytes_down,
            bytes_up=report.bytes_up,
        )
        if report.details is not None:  # written first; readers see it once the round completes
            self._contributions.record_round(
                report.job_id,
                report.round_no,
                report.details.to_json(),
                contribution_entries(report.round_no, report.details),
            )
        done = self._jobs.complete_round(
            report.job_id,
            outcome,
            artifact=artifact,
            strategy=StrategyInfo(spec.strategy.name, dict(spec.strategy.settings)),
            new_state=state,
        )
        return done.version.version_id

    def contribution_records(self, job_id: str) -> list[ContributionRecord]:
        """Contributions of the job's completed rounds (the engine's weighting history)."""
        return contribution_records(self._contributions.entries(job_id))

    def record_failed_attempt(
        self, report: RoundReport, reason: str, *, final: bool = False
    ) -> None:
        self._jobs.start_round(report.job_id, report.round_no, started_at=report.started_at)
        self._jobs.fail_round(
            report.job_id,
            report.round_no,
            message=reason,
            retry=not final,
            finished_at=report.finished_at,
            dropped=[DroppedNode(d.node_id, f"{d.reason}: {d.detail}") for d in report.dropped],
            rejected=[RejectedNode(r.node_id, r.reason, r.detail) for r in report.rejected],
        )


def latest_version_id(registry: ModelRegistry, job_id: str) -> str | None:
    """The newest version id of ``job_id``, or None before its first round."""
    try:
        return registry.latest(job_id).version_id
    except NotFoundError:
        return None
