"""The synchronous round engine: push tasks, fold in updates as they arrive, persist rounds."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from clawfed.aggregation import Strategy
from clawfed.aggregation.errors import TooFewUpdates
from clawfed.aggregation.state import ArrayStateful
from clawfed.coordinator.approval_gate import ParticipationGate
from clawfed.coordinator.diagnostics import RoundDiagnostics
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
from clawfed.coordinator.phases import ask_all, describe_failures, pooled_standardizer
from clawfed.coordinator.round_extras import AuditSink, FactLookup, RoundExtras
from clawfed.coordinator.round_finish import RoundFinisher, with_details
from clawfed.coordinator.round_records import (
    ContributionHistory,
    EventSink,
    Exclusion,
    JobLedger,
    Participant,
    RoundReport,
    combine_metrics,
)
from clawfed.coordinator.task_config import task_config
from clawfed.core import JobError, Update, UpdateRejected, Weights
from clawfed.core.buffers import release_free_heap

log = logging.getLogger("clawfed.coordinator.engine")


def _ignore(kind: str, data: Mapping[str, Any]) -> None:
    del kind, data


class RoundEngine:
    """Runs one job round by round until done, failed or cancelled."""

    def __init__(
        self,
        gateway: NodeGateway,
        ledger: JobLedger,
        *,
        job_id: str,
        spec: JobSpec,
        strategy: Strategy,
        events: EventSink = _ignore,
        gate: ParticipationGate | None = None,
        facts: FactLookup | None = None,
        audit: AuditSink | None = None,
    ) -> None:
        self._gw = gateway
        self._gate = gate
        self._ledger = ledger
        self._job_id = job_id
        self._spec = spec
        self._strategy = strategy
        self._events = events
        self._standardizer: dict[str, list[float]] | None = None
        self._finisher = RoundFinisher(gateway, spec, request=self._request)
        self._private: Any = None  # secure aggregation / DP rounds (secure_round.py)
        if spec.privacy is not None and spec.privacy.private_rounds:
            from clawfed.coordinator.secure_round import PrivateRounds

            self._private = PrivateRounds(
                gateway, ledger, job_id=job_id, spec=spec, strategy=strategy, events=events,
                request=self._request, finish=self._finisher.finish,
            )  # fmt: skip
        self._extras = RoundExtras(
            gateway, spec, strategy, job_id=job_id, events=events, facts=facts, audit=audit,
            request=self._request,
        )  # fmt: skip

    async def run(self) -> str | None:
        """Run the remaining rounds; return the last version id (None if no round ran)."""
        progress = self._ledger.progress(self._job_id)
        if progress.strategy_state:
            self._strategy.load_state_dict(progress.strategy_state)
        if isinstance(self._strategy, ArrayStateful) and progress.state_arrays is not None:
            self._strategy.load_state_arrays(progress.state_arrays)
        self._standardizer = progress.prep.get("standardizer")
        if isinstance(self._ledger, ContributionHistory) and progress.rounds_done:
            self._extras.load_history(self._ledger.contribution_records(self._job_id))
        data = self._spec.data
        if data is not None and data.standardize and self._standardizer is None:
            self._standardizer = await self._stats_phase()
            self._ledger.save_prep(self._job_id, {"standardizer": self._standardizer})
        weights = progress.weights
        if weights is None:
            weights = await self._initial_weights()
        version: str | None = None
        for round_no in range(progress.rounds_done + 1, self._spec.rounds + 1):
            weights, version = await self._round(round_no, weights)
        return version

    async def _wanted(self, round_no: int) -> Sequence[str] | None:
        """The nodes this phase may ask: the job's participants, as the gate admits them."""
        if self._gate is None:
            return self._spec.participants
        return await self._gate.wanted(round_no, self._spec.participants)

    def _request(
        self, kind: TaskKind, round_no: int, config: Mapping[str, Any], weights: Weights | None
    ) -> TaskRequest:
        base = task_config(
            self._spec,
            round_no=round_no if kind is TaskKind.FIT else None,
            standardizer=self._standardizer,
        )
        return TaskRequest(
            task_id=uuid.uuid4().hex,
            job_id=self._job_id,
            round_no=round_no,
            kind=kind,
            deadline_unix=time.time() + self._spec.round_deadline_s,
            config={**base, **config},
            expected=None if weights is None else weights.spec(),
        )

    async def _stats_phase(self) -> dict[str, list[float]]:
        """Pool the participants' feature moments (counts and sums only) for standardization."""
        spec = self._spec
        nodes = await self._gw.wait_for_nodes(
            await self._wanted(0), spec.min_nodes, spec.round_deadline_s
        )
        answers = await ask_all(
            self._gw, nodes, lambda _n: self._request(TaskKind.STATS, 0, {}, None), None,
            spec.round_deadline_s,
        )  # fmt: skip
        if len(answers.outcomes) < spec.min_nodes:
            raise JobError(
                f"job {spec.name}: only {len(answers.outcomes)} node(s) sent data statistics, "
                f"min_nodes={spec.min_nodes} ({describe_failures(answers.failures)})"
            )
        return pooled_standardizer(answers.outcomes)

    async def _initial_weights(self) -> Weights:
        """Ask one live participant for the model's initial weights."""
        last = "no node connected"
        for _attempt in range(self._spec.max_retries + 1):
            nodes = await self._gw.wait_for_nodes(
                await self._wanted(0), 1, self._spec.round_deadline_s
            )
            for node in nodes:
                request = self._request(TaskKind.INIT, 0, {}, None)
                try:
                    outcome = await asyncio.wait_for(
                        self._gw.run_task(node.node_id, request, None),
                        self._spec.round_deadline_s,
                    )
                except (TaskFailed, UpdateRejected, TimeoutError) as exc:
                    last = f"{node.node_id}: {exc or 'no answer before the deadline'}"
                    log.warning("job %s: asking for initial weights failed: %s", self._job_id, last)
                    continue
                if outcome.weights is None or len(outcome.weights) == 0:
                    last = f"{node.node_id}: returned no weights"
                    continue
                outcome.weights.check_finite()
                self._ledger.save_initial(self._job_id, outcome.weights, node.node_id)
                return outcome.weights
        raise JobError(f"job {self._spec.name}: could not get initial weights ({last})")

    async def _round(self, round_no: int, weights: Weights) -> tuple[Weights, str]:
        last_reason = ""
        attempts = self._spec.max_retries + 1
        for attempt in range(1, attempts + 1):
            if self._private is not None:
                wanted = await self._wanted(round_no)
                result = await self._private.attempt(round_no, attempt, weights, wanted)
            else:
                result = await self._attempt(round_no, attempt, weights)
            if isinstance(result, tuple):
                return result
            last_reason = result
            log.warning(
                "job %s round %d attempt %d/%d failed: %s",
                self._spec.name,
                round_no,
                attempt,
                attempts,
                result,
            )
        raise JobError(
            f"job {self._spec.name}: round {round_no} failed after {attempts} attempt(s): "
            f"{last_reason}"
        )

    def _final(self, attempt: int) -> bool:
        return attempt >= self._spec.max_retries + 1

    async def _attempt(
        self, round_no: int, attempt: int, weights: Weights
    ) -> tuple[Weights, str] | str:
        started = datetime.now(UTC)
        spec = self._spec
        nodes = await self._gw.wait_for_nodes(
            await self._wanted(round_no), spec.min_nodes, spec.round_deadline_s
        )
        if len(nodes) < spec.min_nodes:
            reason = f"only {len(nodes)} of min_nodes={spec.min_nodes} node(s) connected"
            self._ledger.record_failed_attempt(
                RoundReport(
                    self._job_id, round_no, attempt, started, datetime.now(UTC), (), (), (), 0, 0
                ),
                reason,
                final=self._final(attempt),
            )
            return reason
        instructions = self._strategy.configure(round_no, nodes)
        departments = {n.node_id: n.department for n in nodes}
        aggregator = self._extras.collector(round_no, weights, nodes)
        wire_spec = self._extras.wire_spec(weights)
        diagnostics = RoundDiagnostics(weights, seed=round_no)
        model: OutboundModel = self._gw.prepare(weights)
        spec_now = weights.spec()

        def fold(node_id: str, outcome: TaskOutcome) -> TaskOutcome:
            # Runs as the update completes, before the gateway receives another: once it is
            # folded in, nothing holds the update's buffer and the next one can reuse it.
            if outcome.weights is None:
                raise TaskFailed(node_id, FailureCode.NODE_ERROR, "fit returned no update")
            delta = self._extras.decode(outcome, spec_now)
            aggregator.add(Update(node_id, outcome.num_samples, delta, outcome.metrics))
            diagnostics.add(node_id, delta)
            return dataclasses.replace(outcome, weights=None)

        requests = {
            i.node_id: dataclasses.replace(
                self._request(TaskKind.FIT, round_no, i.config, weights),
                expected=wire_spec,
                on_outcome=functools.partial(fold, i.node_id),
            )
            for i in instructions
        }
        self._events(
            "round_started", {"job_id": self._job_id, "round": round_no, "nodes": sorted(requests)}
        )
        pending: dict[asyncio.Task[TaskOutcome], str] = {
            asyncio.create_task(self._gw.run_task(nid, req, model)): nid
            for nid, req in requests.items()
        }
        participants: list[Participant] = []
        dropped: list[Exclusion] = []
        rejected: list[Exclusion] = []
        bytes_up = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + spec.round_deadline_s
        while pending:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                done, _ = await asyncio.wait(
                    pending, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
            except asyncio.CancelledError:  # job cancelled or coordinator stopping
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
                raise
            for task in done:
                node_id = pending.pop(task)
                try:
                    outcome = task.result()  # already folded in by ``fold``
                    bytes_up += outcome.bytes_up
                except UpdateRejected as exc:
                    rejected.append(Exclusion(node_id, str(exc.reason), exc.detail))
                    self._events(
                        "update_rejected",
                        {
                            "job_id": self._job_id,
                            "round": round_no,
                            "node_id": node_id,
                            "reason": str(exc.reason),
                            "detail": exc.detail,
                        },
                    )
                    continue
                except TaskFailed as exc:
                    dropped.append(Exclusion(node_id, exc.code, exc.detail))
                    self._events(
                        "node_dropped",
                        {
                            "job_id": self._job_id,
                            "round": round_no,
                            "node_id": node_id,
                            "reason": exc.code,
                            "detail": exc.detail,
                        },
                    )
                    continue
                participants.append(
                    Participant(
                        node_id,
                        departments.get(node_id, ""),
                        outcome.num_samples,
                        dict(outcome.metrics),
                    )
                )
        for task, node_id in pending.items():
            task.cancel()
            await self._gw.cancel(node_id, requests[node_id].task_id, "round deadline passed")
            detail = f"no answer within the round deadline of {spec.round_deadline_s:g} s"
            dropped.append(Exclusion(node_id, "straggler", detail))
            self._events(
                "node_dropped",
                {
                    "job_id": self._job_id,
                    "round": round_no,
                    "node_id": node_id,
                    "reason": "straggler",
                    "detail": detail,
                },
            )
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        report = RoundReport(
            job_id=self._job_id,
            round_no=round_no,
            attempt=attempt,
            started_at=started,
            finished_at=datetime.now(UTC),
            participants=tuple(sorted(participants, key=lambda p: p.node_id)),
            dropped=tuple(dropped),
            rejected=tuple(rejected),
            bytes_down=model.nbytes * len(requests),
            bytes_up=bytes_up,
            metrics=combine_metrics(participants),
        )
        if aggregator.count() < spec.min_nodes:
            reason = (
                f"only {aggregator.count()} usable update(s), min_nodes={spec.min_nodes}"
                f" ({len(dropped)} dropped, {len(rejected)} rejected)"
            )
            self._ledger.record_failed_attempt(report, reason, final=self._final(attempt))
            return reason
        try:
            new_weights = aggregator.result()
        except TooFewUpdates as exc:
            self._ledger.record_failed_attempt(report, str(exc), final=self._final(attempt))
            return str(exc)
        new_weights.check_finite()
        report = await self._finisher.finish(report, new_weights, diagnostics)
        details = await self._extras.details(
            round_no, weights, aggregator, report.metrics, departments
        )
        report = with_details(report, details)
        arrays = (
            self._strategy.state_arrays() if isinstance(self._strategy, ArrayStateful) else None
        )
        version = self._ledger.complete_round(
            report, new_weights, self._strategy.state_dict(), arrays
        )
        release_free_heap()  # what this round's chunk messages left in the heap
        self._extras.published(round_no, version, details)
        self._events(
            "round_completed",
            {"job_id": self._job_id, "round": round_no, "version": version, "report": report},
        )
        return new_weights, version
