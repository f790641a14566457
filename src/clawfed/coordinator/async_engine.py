"""Asynchronous rounds with FedBuff: nodes train whenever ready, every K updates make a version.

Nguyen et al., "Federated Learning with Buffered Asynchronous Aggregation", AISTATS 2022.
Each node gets a new fit task as soon as its previous result arrives, with the current
global weights and their version. A result computed on version ``τ`` that arrives when the
model is at version ``t`` has staleness ``t − τ`` and enters the buffer scaled by
``(1 + staleness)^(−staleness_exponent)`` (``1/sqrt(1 + s)`` by default). When the buffer
holds ``buffer_size`` (K) updates the server steps::

    x ← x + server_lr · Σ wᵢ·s(τᵢ)·Δᵢ / Σ wᵢ

with ``wᵢ = 1`` (``uniform``, as in the paper, where the sum is divided by K) or the sample
count (``samples``). A slow department never holds back the others: its late result simply
counts less. Every aggregation is one round in the ledger and the registry.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from clawfed.aggregation.anomaly import UpdateAction
from clawfed.aggregation.base import ConfigValue
from clawfed.aggregation.fedbuff import (
    BufferedUpdate,
    BufferWeighting,
    FedBuffBuffer,
    FedBuffSettings,
    staleness_weight,
)
from clawfed.aggregation.round_details import CompressionUse, RoundDetails
from clawfed.aggregation.round_policy import PublishedWeight
from clawfed.coordinator.gateway import (
    FailureCode,
    NodeGateway,
    OutboundModel,
    TaskFailed,
    TaskKind,
    TaskOutcome,
    TaskRequest,
)
from clawfed.coordinator.jobspec import JobSpec
from clawfed.coordinator.phases import standardizer_phase
from clawfed.coordinator.round_records import (
    EventSink,
    Exclusion,
    JobLedger,
    Participant,
    RoundReport,
    combine_metrics,
)
from clawfed.coordinator.task_config import task_config
from clawfed.core import (
    JobError,
    PayloadError,
    TensorSpec,
    Update,
    UpdateRejected,
    Weights,
)
from clawfed.wire.codecs import Codec, CodecName, build_codec, encoded_spec

log = logging.getLogger("clawfed.coordinator.async_engine")

__all__ = [
    "AsyncRound",
    "AsyncRoundEngine",
    "BufferWeighting",
    "BufferedUpdate",
    "FedBuffBuffer",
    "FedBuffSettings",
    "staleness_weight",
]


def _ignore(kind: str, data: Mapping[str, Any]) -> None:
    del kind, data


@dataclass(frozen=True)
class AsyncRound:
    """One aggregation: the version it produced and the buffered updates it was made of."""

    version: int
    version_id: str
    updates: tuple[BufferedUpdate, ...]


@dataclass
class _Running:
    node_id: str
    base_version: int
    request: TaskRequest
    deadline: float


class AsyncRoundEngine:
    """Runs one job with FedBuff until ``spec.rounds`` aggregations are done.

    Same ``NodeGateway`` and ``JobLedger`` as the synchronous ``RoundEngine``; the initial
    weights come from one node exactly as there. The strategy state stored with each round
    is ``{"mode": "fedbuff"}``: the buffer starts empty after a restart.

    ``task_config(round_no)`` gives the config every fit task carries; by default it is
    ``task_config.task_config`` of the spec, with the pooled standardizer once the STATS phase
    ran (jobs with ``data.standardize``). ``round_no`` of a task is the version it will help
    make. With ``compression`` in the job the nodes send encoded updates, decoded here; the
    wire and decoded bytes of each aggregation are in its report's details.
    """

    def __init__(
        self,
        gateway: NodeGateway,
        ledger: JobLedger,
        *,
        job_id: str,
        spec: JobSpec,
        settings: FedBuffSettings,
        events: EventSink | None = None,
        task_config: Callable[[int], Mapping[str, ConfigValue]] | None = None,
    ) -> None:
        self._gw = gateway
        self._ledger = ledger
        self._job_id = job_id
        self._spec = spec
        self._settings = settings
        self._events: EventSink = events or _ignore
        self._task_config = task_config
        self._history: list[AsyncRound] = []
        self._standardizer: dict[str, list[float]] | None = None
        comp = spec.compression
        self._codec: Codec | None = None
        if comp is not None and comp.codec is not CodecName.NONE:
            self._codec = build_codec(comp.codec, topk_fraction=comp.topk_ratio)

    def history(self) -> tuple[AsyncRound, ...]:
        """The aggregations this engine made, in order."""
        return tuple(self._history)

    def _config(self, round_no: int) -> dict[str, Any]:
        if self._task_config is not None:
            return dict(self._task_config(round_no))
        return dict(task_config(self._spec, round_no=round_no, standardizer=self._standardizer))

    def _request(self, kind: TaskKind, round_no: int, weights: Weights | None) -> TaskRequest:
        merged = self._config(round_no)
        return TaskRequest(
            task_id=uuid.uuid4().hex,
            job_id=self._job_id,
            round_no=round_no,
            kind=kind,
            deadline_unix=time.time() + self._spec.round_deadline_s,
            config=merged,
            expected=None if weights is None else self._wire_spec(kind, weights),
        )

    def _wire_spec(self, kind: TaskKind, weights: Weights) -> tuple[TensorSpec, ...]:
        spec = weights.spec()
        if kind is not TaskKind.FIT or self._codec is None:
            return spec
        return encoded_spec(self._codec, spec)

    def _decode(self, wire: Weights, spec: Sequence[TensorSpec]) -> Weights:
        if self._codec is None:
            return wire
        try:
            return self._codec.decode(wire, spec)
        except PayloadError as exc:
            raise UpdateRejected(exc.reason, f"{self._codec.name} update: {exc.detail}") from exc

    async def _stats(self) -> dict[str, list[float]]:
        spec = self._spec
        nodes = await self._gw.wait_for_nodes(
            spec.participants, spec.min_nodes, spec.round_deadline_s
        )
        return await standardizer_phase(
            self._gw, nodes, lambda _n: self._request(TaskKind.STATS, 0, None),
            min_nodes=spec.min_nodes, deadline_s=spec.round_deadline_s, job=spec.name,
        )  # fmt: skip

    async def _initial_weights(self) -> Weights:
        last = "no node connected"
        deadline = self._spec.round_deadline_s
        for _attempt in range(self._spec.max_retries + 1):
            for node in await self._gw.wait_for_nodes(self._spec.participants, 1, deadline):
                request = self._request(TaskKind.INIT, 0, None)
                try:
                    outcome = await asyncio.wait_for(
                        self._gw.run_task(node.node_id, request, None), deadline
                    )
                except (TaskFailed, UpdateRejected, TimeoutError) as exc:
                    last = f"{node.node_id}: {exc or 'no answer before the deadline'}"
                    continue
                if outcome.weights is None or len(outcome.weights) == 0:
                    last = f"{node.node_id}: returned no weights"
                    continue
                outcome.weights.check_finite()
                self._ledger.save_initial(self._job_id, outcome.weights, node.node_id)
                return outcome.weights
        raise JobError(f"job {self._spec.name}: could not get initial weights ({last})")

    async def run(self) -> str | None:
        """Run until ``spec.rounds`` versions exist; return the last version id (None: none ran)."""
        progress = self._ledger.progress(self._job_id)
        self._standardizer = progress.prep.get("standardizer")
        data = self._spec.data
        if data is not None and data.standardize and self._standardizer is None:
            self._standardizer = await self._stats()
            self._ledger.save_prep(self._job_id, {"standardizer": self._standardizer})
        weights = progress.weights
        if weights is None:
            weights = await self._initial_weights()
        if progress.rounds_done >= self._spec.rounds:
            return None
        run = _AsyncRun(self, weights, progress.rounds_done)
        try:
            return await run.loop()
        finally:
            await run.stop_all()


class _AsyncRun:
    """The state of one ``AsyncRoundEngine.run`` call."""

    def __init__(self, engine: AsyncRoundEngine, weights: Weights, version: int) -> None:
        self.e = engine
        self.cfg = engine._settings
        self.spec = engine._spec
        self.weights = weights
        self.version = version
        self.model: OutboundModel = engine._gw.prepare(weights)
        self.running: dict[asyncio.Task[TaskOutcome], _Running] = {}
        self.retry_at: dict[str, float] = {}
        self.departments: dict[str, str] = {}
        self.last_version_id: str | None = None
        self._new_buffer()

    def _new_buffer(self) -> None:
        self.buffer = FedBuffBuffer(self.weights, self.cfg)
        self.parts: list[Participant] = []
        self.dropped: list[Exclusion] = []
        self.rejected: list[Exclusion] = []
        self.bytes_down = 0
        self.bytes_up = 0
        self.bytes_decoded = 0
        self.started = datetime.now(UTC)

    def _emit(self, kind: str, **data: Any) -> None:
        self.e._events(kind, {"job_id": self.e._job_id, **data})

    def _start_tasks(self, now: float) -> None:
        busy = {r.node_id for r in self.running.values()}
        limit = self.cfg.max_concurrency
        wanted = self.spec.participants
        for node in self.e._gw.live_nodes():
            if limit is not None and len(self.running) >= limit:
                return
            nid = node.node_id
            if nid in busy or (wanted is not None and nid not in wanted):
                continue
            if self.retry_at.get(nid, 0.0) > now:
                continue
            self.departments[nid] = node.department
            req = self.e._request(TaskKind.FIT, self.version + 1, self.weights)
            task = asyncio.create_task(self.e._gw.run_task(nid, req, self.model))
            deadline = now + self.spec.round_deadline_s
            self.running[task] = _Running(nid, self.version, req, deadline)
            self.bytes_down += self.model.nbytes

    async def loop(self) -> str | None:
        aio = asyncio.get_running_loop()
        stall = self.cfg.stall_timeout_s or self.spec.round_deadline_s * (self.spec.max_retries + 1)
        last_accept = aio.time()
        while self.version < self.spec.rounds:
            now = aio.time()
            self._start_tasks(now)
            if now - last_accept > stall:
                reason = f"no update accepted for {stall:g} s at version {self.version}"
                self.e._ledger.record_failed_attempt(self._report(1), reason)
                raise JobError(f"job {self.spec.name}: {reason}")
            wake = [r.deadline for r in self.running.values()]
            wake += [t for t in self.retry_at.values() if t > now]
            timeout = max(0.0, min([*wake, now + min(1.0, self.cfg.retry_after_s)]) - now)
            if not self.running:
                live = await self.e._gw.wait_for_nodes(
                    self.spec.participants, 1, max(timeout, 0.01)
                )
                if live:  # every live node waits for its retry time
                    await asyncio.sleep(max(timeout, 0.01))
                continue
            done, _ = await asyncio.wait(
                self.running, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            for task in done:
                if self._finish(task, self.running.pop(task)):
                    last_accept = aio.time()
                if self.buffer.count() >= self.cfg.buffer_size:
                    self._aggregate()
                    if self.version >= self.spec.rounds:
                        break
            await self._expire(aio.time())
        return self.last_version_id

    def _finish(self, task: asyncio.Task[TaskOutcome], run: _Running) -> bool:
        """Handle one finished task; True if its update entered the buffer."""
        nid = run.node_id
        try:
            outcome = task.result()
            if outcome.weights is None:
                raise TaskFailed(nid, FailureCode.NODE_ERROR, "fit returned no update")
            self.bytes_up += outcome.bytes_up
            delta = self.e._decode(outcome.weights, self.weights.spec())
            self.bytes_decoded += delta.nbytes
            update = Update(nid, outcome.num_samples, delta, outcome.metrics)
            limit = self.cfg.max_staleness
            staleness = self.version - run.base_version
            if limit is not None and staleness > limit:
                detail = f"staleness {staleness} > max_staleness {limit}"
                self.dropped.append(Exclusion(nid, "stale", detail))
                self._emit("node_dropped", round=self.version + 1, node_id=nid, reason="stale")
                return False
            entry = self.buffer.add(update, run.base_version, self.version)
        except UpdateRejected as exc:
            self.rejected.append(Exclusion(nid, str(exc.reason), exc.detail))
            self._emit("update_rejected", round=self.version + 1, node_id=nid, reason=exc.reason)
            return False
        except TaskFailed as exc:
            self.dropped.append(Exclusion(nid, exc.code, exc.detail))
            self.retry_at[nid] = asyncio.get_running_loop().time() + self.cfg.retry_after_s
            self._emit("node_dropped", round=self.version + 1, node_id=nid, reason=exc.code)
            return False
        dept = self.departments.get(nid, "")
        self.parts.append(Participant(nid, dept, outcome.num_samples, dict(outcome.metrics)))
        self._emit(
            "update_buffered",
            round=self.version + 1,
            node_id=nid,
            base_version=run.base_version,
            staleness=entry.staleness,
            staleness_weight=entry.staleness_weight,
        )
        return True

    async def _expire(self, now: float) -> None:
        for task, run in list(self.running.items()):
            if run.deadline > now:
                continue
            del self.running[task]
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await self.e._gw.cancel(run.node_id, run.request.task_id, "task deadline passed")
            detail = f"no answer within the task deadline of {self.spec.round_deadline_s:g} s"
            self.dropped.append(Exclusion(run.node_id, "straggler", detail))
            self.retry_at[run.node_id] = now + self.cfg.retry_after_s
            self._emit(
                "node_dropped", round=self.version + 1, node_id=run.node_id, reason="straggler"
            )

    def _report(self, attempt: int) -> RoundReport:
        merged = _merge(self.parts)
        metrics = combine_metrics(merged)
        st = [e.staleness for e in self.buffer.entries()]
        if st:
            metrics["staleness_mean"] = float(np.mean(st))
            metrics["staleness_max"] = float(max(st))
        return RoundReport(
            job_id=self.e._job_id,
            round_no=self.version + 1,
            attempt=attempt,
            started_at=self.started,
            finished_at=datetime.now(UTC),
            participants=merged,
            dropped=tuple(self.dropped),
            rejected=tuple(self.rejected),
            bytes_down=self.bytes_down,
            bytes_up=self.bytes_up,
            metrics=metrics,
            details=self._details(),
        )

    def _details(self) -> RoundDetails:
        """Each node's say in this aggregation (sample or unit weight × staleness discount)."""
        said: dict[str, tuple[float, int, float]] = {}
        for e in self.buffer.entries():
            w, n, s = said.get(e.node_id, (0.0, 0, 1.0))
            said[e.node_id] = (w + e.weight * e.staleness_weight, n + e.num_samples,
                               min(s, e.staleness_weight))  # fmt: skip
        total = sum(w for w, _, _ in said.values())
        weights = tuple(
            PublishedWeight(nid, n, w, w / total if total else 0.0, s, UpdateAction.KEPT, None)
            for nid, (w, n, s) in sorted(said.items())
        )
        codec = self.e._codec
        compression = None
        if codec is not None:
            compression = CompressionUse(str(codec.name), self.bytes_up, self.bytes_decoded)
        return RoundDetails(
            weights=weights, compression=compression, departments=dict(self.departments)
        )

    def _aggregate(self) -> None:
        report = self._report(1)
        new = self.buffer.result()
        new.check_finite()
        version_id = self.e._ledger.complete_round(report, new, {"mode": "fedbuff"})
        self.version += 1
        self.e._history.append(AsyncRound(self.version, version_id, self.buffer.entries()))
        self.last_version_id = version_id
        self.weights = new
        self.model = self.e._gw.prepare(new)
        self._emit("round_completed", round=self.version, version=version_id, report=report)
        self._new_buffer()

    async def stop_all(self) -> None:
        """Cancel every task still running (the job is done or failed)."""
        for task, run in list(self.running.items()):
            if not task.done():  # a finished task's result is just not used
                task.cancel()
                await self.e._gw.cancel(run.node_id, run.request.task_id, "job finished")
        if self.running:
            await asyncio.gather(*self.running, return_exceptions=True)
        self.running.clear()


def _merge(parts: Sequence[Participant]) -> tuple[Participant, ...]:
    """One participant per node: sample counts summed, metrics sample-weighted."""
    by_node: dict[str, list[Participant]] = {}
    for p in parts:
        by_node.setdefault(p.node_id, []).append(p)
    out = []
    for nid in sorted(by_node):
        ps = by_node[nid]
        metrics: Mapping[str, float] = combine_metrics(ps)
        out.append(Participant(nid, ps[0].department, sum(p.num_samples for p in ps), metrics))
    return tuple(out)
