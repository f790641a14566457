"""Job lifecycle on the coordinator: submit, run as an asyncio task, cancel, resume."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from clawfed.aggregation.fedbuff import FedBuffSettings
from clawfed.aggregation.quality_weighted import NodeFact
from clawfed.aggregation.registry import build_strategy
from clawfed.coordinator.approval_gate import ApprovalGate
from clawfed.coordinator.async_engine import AsyncRoundEngine
from clawfed.coordinator.engine import RoundEngine
from clawfed.coordinator.jobspec import JobMode, JobSpec, parse_job
from clawfed.coordinator.ledger import SqlLedger
from clawfed.coordinator.round_records import RoundReport
from clawfed.core import ClawfedError, ConfigError, JobError, NotFoundError
from clawfed.governance.jobs import JobRecord, JobStatus, JobStore
from clawfed.wire._proto import federation_pb2 as pb

if TYPE_CHECKING:
    from clawfed.coordinator.server import Coordinator

log = logging.getLogger("clawfed.coordinator.jobs")

_FINAL_STATUSES = {str(JobStatus.COMPLETED), str(JobStatus.FAILED), str(JobStatus.CANCELLED)}


def job_info(record: JobRecord) -> pb.JobInfo:
    """The wire form of a job record."""
    return pb.JobInfo(
        job_id=record.job_id,
        name=record.name,
        status=str(record.status),
        rounds_done=record.rounds_done,
        rounds_total=record.rounds_total,
        message=record.message or "",
        spec_yaml=record.spec_yaml,
        created_unix=record.created_at.timestamp(),
    )


class JobRunner:
    """Runs each running job as one asyncio task; survives coordinator restarts via the store."""

    def __init__(self, coordinator: Coordinator) -> None:
        self._c = coordinator
        self.store = JobStore(coordinator.db)
        self.ledger = SqlLedger(coordinator.db, coordinator.ws.artifacts)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._tick = asyncio.Event()
        self._cancel_requested: set[str] = set()

    def submit(self, spec: JobSpec, *, actor: str) -> pb.JobInfo:
        """Validate, store and start a job; its id is its name."""
        build_strategy(spec.strategy.name, spec.strategy.settings)  # fail fast on bad settings
        try:
            existing = self.store.get(spec.name)
        except NotFoundError:
            existing = None
        if existing is not None:
            raise ConfigError(
                f"a job named {spec.name!r} already exists ({existing.status}); choose another name"
            )
        record = self.store.create(spec.name, spec.name, spec.to_yaml(), spec.rounds)
        self._c.audit.append(
            actor=actor,
            role="data_admin",
            action="job.submit",
            resource=f"job:{spec.name}",
            departments=[],
            detail={"rounds": spec.rounds, "strategy": spec.strategy.name},
            outcome="ok",
        )
        self._start(record.job_id, spec)
        return job_info(self.store.get(record.job_id))

    def changed(self) -> None:
        """Wake every ``watch`` (called on each engine or job event)."""
        self._tick.set()
        self._tick = asyncio.Event()

    async def watch(self, job_id: str, keepalive_s: float = 15.0) -> AsyncIterator[pb.JobInfo]:
        """The job's info now and after every change, until it reaches a final status."""
        last = b""
        while True:
            tick = self._tick
            info = self.info(job_id)
            raw = info.SerializeToString()
            if raw != last:
                last = raw
                yield info
            if info.status in _FINAL_STATUSES:
                return
            try:
                await asyncio.wait_for(tick.wait(), keepalive_s)
            except TimeoutError:
                last = b""  # resend as a keepalive

    def info(self, job_id: str) -> pb.JobInfo:
        return job_info(self.store.get(job_id))

    def list_info(self) -> list[pb.JobInfo]:
        return [job_info(r) for r in self.store.list()]

    def resume_all(self) -> None:
        """Restart every job the store says was running (after a coordinator restart)."""
        for record in self.store.resumable_jobs():
            try:
                spec = parse_job(record.spec_yaml, source=f"stored job {record.job_id}")
            except ConfigError as exc:
                self.store.set_status(record.job_id, JobStatus.FAILED, str(exc))
                continue
            log.info("resuming job %s after round %d", record.job_id, record.rounds_done)
            self._start(record.job_id, spec)

    async def cancel(self, job_id: str, *, actor: str) -> pb.JobInfo:
        record = self.store.get(job_id)
        if record.status not in (JobStatus.PENDING, JobStatus.RUNNING):
            raise JobError(f"job {job_id} is already {record.status}")
        self._cancel_requested.add(job_id)
        task = self._tasks.get(job_id)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        else:
            self._set_status(job_id, JobStatus.CANCELLED, f"cancelled by {actor}")
        self._c.audit.append(
            actor=actor,
            role="data_admin",
            action="job.cancel",
            resource=f"job:{job_id}",
            departments=[],
            detail={},
            outcome="ok",
        )
        return self.info(job_id)

    async def stop_all(self) -> None:
        """Stop every job task without changing its stored status, so it resumes later."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def wait(self, job_id: str) -> None:
        """Wait until a job's task ends (used by the demo and tests)."""
        task = self._tasks.get(job_id)
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)

    def _set_status(self, job_id: str, status: JobStatus, message: str) -> None:
        self.store.set_status(job_id, status, message)
        self.changed()

    def _start(self, job_id: str, spec: JobSpec) -> None:
        self.store.set_status(job_id, JobStatus.RUNNING, "")
        task = asyncio.create_task(self._run(job_id, spec), name=f"job:{job_id}")
        self._tasks[job_id] = task
        task.add_done_callback(lambda _t: self._tasks.pop(job_id, None))

    def _engine(self, job_id: str, spec: JobSpec) -> RoundEngine | AsyncRoundEngine:
        """The job's engine: FedBuff for ``mode: async``, the round engine otherwise."""
        if spec.mode is JobMode.ASYNC:
            return AsyncRoundEngine(
                self._c.hub,
                self.ledger,
                job_id=job_id,
                spec=spec,
                settings=spec.fedbuff or FedBuffSettings(),
                events=self._audited_events(job_id, spec),
            )
        strategy = build_strategy(spec.strategy.name, spec.strategy.settings)
        return RoundEngine(
            self._c.hub,
            self.ledger,
            job_id=job_id,
            spec=spec,
            strategy=strategy,
            events=self._audited_events(job_id, spec),
            gate=ApprovalGate(self._c.db, self._c.audit, job_id, spec, events=self._c.events),
            facts=lambda node_id: self._dataset_fact(node_id, spec.dataset),
            audit=lambda action, depts, detail: self._audit_round(job_id, action, depts, detail),
        )

    def _audited_events(
        self, job_id: str, spec: JobSpec
    ) -> Callable[[str, Mapping[str, Any]], None]:
        """The engine's event sink: every completed round also leaves a data-use record.

        The record says whose data the new version was trained on, for which purpose, with
        how many rows and how many left out for lack of consent (counts only, never rows).
        """

        def sink(kind: str, data: Mapping[str, Any]) -> None:
            report = data.get("report") if kind == "round_completed" else None
            if isinstance(report, RoundReport):
                self._audit_round(
                    job_id,
                    "round.data_use",
                    sorted({p.department or p.node_id for p in report.participants}),
                    data_use_detail(report, spec, str(data.get("version", ""))),
                )
            self._c.events(kind, data)

        return sink

    def _dataset_fact(self, node_id: str, dataset: str | None) -> NodeFact | None:
        """Rows and quality score of the dataset ``node_id`` offers for the job (its Hello)."""
        session = self._c.hub.get(node_id)
        if session is None or dataset is None:
            return None
        return dataset_fact(session.datasets.get(dataset))

    def _audit_round(
        self, job_id: str, action: str, departments: Sequence[str], detail: Mapping[str, Any]
    ) -> None:
        self._c.audit.append(
            actor="coordinator",
            role="system",
            action=action,
            resource=f"job:{job_id}",
            departments=list(departments),
            detail=dict(detail),
            outcome="ok",
        )

    async def _run(self, job_id: str, spec: JobSpec) -> None:
        engine = self._engine(job_id, spec)
        self._c.events("job_started", {"job_id": job_id, "rounds": spec.rounds})
        try:
            version = await engine.run()
        except asyncio.CancelledError:
            if job_id in self._cancel_requested:
                self._cancel_requested.discard(job_id)
                self._set_status(job_id, JobStatus.CANCELLED, "cancelled")
            raise
        except ClawfedError as exc:
            log.error("job %s failed: %s", job_id, exc)
            self._set_status(job_id, JobStatus.FAILED, str(exc))
            self._c.events("job_failed", {"job_id": job_id, "reason": str(exc)})
            return
        except Exception as exc:  # a bug: fail the job visibly rather than leave it "running"
            log.exception("job %s stopped by an internal error", job_id)
            reason = f"internal error ({type(exc).__name__}: {str(exc)[:500]}); see the log"
            self._set_status(job_id, JobStatus.FAILED, reason)
            self._c.events("job_failed", {"job_id": job_id, "reason": reason})
            return
        self._set_status(job_id, JobStatus.COMPLETED, f"final version {version}")
        self._c.events("job_completed", {"job_id": job_id, "version": version})


def dataset_fact(metadata_json: str | None) -> NodeFact | None:
    """Rows and data-quality score from a dataset's Hello metadata (None when it has neither).

    A profiled dataset (``data.profile``) gives both; a bare file gives its row count and
    no quality (the weighting's ``default_quality`` then applies).
    """
    if not metadata_json:
        return None
    try:
        meta = json.loads(metadata_json)
    except ValueError:
        return None
    if not isinstance(meta, dict):
        return None
    profile = meta.get("profile")
    rows: object = meta.get("rows")
    quality: object = None
    if isinstance(profile, dict):
        rows = profile.get("rows")
        q = profile.get("quality")
        quality = q.get("score") if isinstance(q, dict) else None
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
        return None
    if isinstance(quality, bool) or not isinstance(quality, int | float):
        return None
    if not 0.0 <= float(quality) <= 1.0:
        return None
    return NodeFact(num_samples=rows, quality=float(quality), contribution=0.0)


#: Per-participant counts a round's data-use record copies from the node's metrics.
_DATA_USE_COUNTS = ("rows_used", "rows_excluded_no_consent")


def data_use_detail(report: RoundReport, spec: JobSpec, version: str) -> dict[str, Any]:
    """The audit detail of one completed round: version, purpose, and each department's use."""
    used = []
    for p in report.participants:
        entry: dict[str, Any] = {
            "node": p.node_id,
            "department": p.department or p.node_id,
            "samples": p.num_samples,
        }
        for key in _DATA_USE_COUNTS:
            value = p.metrics.get(key, p.metrics.get(f"train_{key}"))
            if value is not None:
                entry[key] = int(value)
        used.append(entry)
    return {
        "round": report.round_no,
        "version": version,
        "dataset": spec.dataset,
        "purpose": spec.purpose,
        "participants": used,
    }
