"""The sync engine's aggregation extras: weighting facts, screening, compression, contribution.

``RoundExtras`` lives as long as one job run. The round engine asks it for the round's
collector (``aggregation.round_policy``), the wire layout it expects from the nodes, the
decoded delta of each answer, and, once the round's model is known, the round's
``RoundDetails``: published weights, free-rider flags, LOO and Shapley contributions and
the anomaly attribution. ``published`` then writes them to the audit chain and emits the
``free_rider`` and ``anomaly`` events.

Contribution is measured without moving data: the candidate models (previous global plus
the weighted mean of a subset of the round's updates) are sent as EVALUATE tasks to the
validator nodes, which answer with holdout metrics only.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from clawfed.aggregation import Strategy
from clawfed.aggregation.anomaly import AnomalyReport, attribute_anomaly
from clawfed.aggregation.contribution import (
    ContributionLedger,
    ContributionRecord,
    RoundContribution,
    evaluate_round,
    fedavg_subset,
)
from clawfed.aggregation.quality_weighted import NodeFact, QualityWeighted
from clawfed.aggregation.round_details import CompressionUse, RoundDetails
from clawfed.aggregation.round_policy import PublishedWeight, RoundCollector, RoundPolicy
from clawfed.coordinator.gateway import NodeGateway, TaskKind, TaskOutcome, TaskRequest
from clawfed.coordinator.jobspec import JobSpec
from clawfed.coordinator.phases import ask_all, evaluation_metrics
from clawfed.coordinator.task_config import TaskKey, task_config
from clawfed.core import (
    JobError,
    NodeInfo,
    PayloadError,
    RejectReason,
    TensorSpec,
    UpdateRejected,
    Weights,
)
from clawfed.governance.rounds import ContributionEntry
from clawfed.wire.codecs import Codec, CodecName, build_codec, encoded_spec

log = logging.getLogger("clawfed.coordinator.round_extras")

#: What the coordinator knows of a node's dataset for this job (rows and quality), or None.
FactLookup = Callable[[str], NodeFact | None]
#: Writes one audit entry: (action, departments, detail).
AuditSink = Callable[[str, Sequence[str], Mapping[str, Any]], None]
EventSink = Callable[[str, Mapping[str, Any]], None]
#: The engine's task factory: (kind, round, extra config, expected weights) -> request.
RequestFactory = Callable[[TaskKind, int, Mapping[str, Any], Weights | None], TaskRequest]

#: Sample cap of a node whose dataset rows the coordinator does not know.
_NO_CAP = 1 << 62
#: Audit action of a round's aggregation record (weights, flags, contributions, anomaly).
AUDIT_ACTION = "round.aggregation"


def _no_facts(node_id: str) -> NodeFact | None:
    del node_id
    return None


def _no_audit(action: str, departments: Sequence[str], detail: Mapping[str, Any]) -> None:
    del action, departments, detail


class RoundExtras:
    """Per-job helper of ``RoundEngine`` (see the module docstring)."""

    def __init__(
        self,
        gateway: NodeGateway,
        spec: JobSpec,
        strategy: Strategy,
        *,
        job_id: str,
        events: EventSink,
        facts: FactLookup | None = None,
        audit: AuditSink | None = None,
        request: RequestFactory | None = None,
    ) -> None:
        self._gw = gateway
        self._make_request = request
        self._spec = spec
        self._strategy = strategy
        self._job_id = job_id
        self._events = events
        self._facts = facts or _no_facts
        self._audit = audit or _no_audit
        formula = None if spec.weighting is None else spec.weighting.formula()
        # sketches cost a pass over each update: only for free riders or an `anomaly` section
        self.policy = RoundPolicy(
            formula=formula, free_riders=spec.free_riders, sketch=spec.anomaly is not None
        )
        comp = spec.compression
        self._codec: Codec | None = None
        if comp is not None and comp.codec is not CodecName.NONE:
            self._codec = build_codec(comp.codec, topk_fraction=comp.topk_ratio)
        self.ledger = ContributionLedger()
        self._previous: float | None = None
        self._wire = 0
        self._decoded = 0

    # ---- before the round -------------------------------------------------------------
    def load_history(self, records: Iterable[ContributionRecord]) -> None:
        """Contribution records of the rounds already done (after a restart)."""
        self.ledger = ContributionLedger.from_records(records)

    def wire_spec(self, weights: Weights) -> tuple[TensorSpec, ...]:
        """The tensors a fit answer must carry: the model's, or its codec's encoding."""
        spec = weights.spec()
        return spec if self._codec is None else encoded_spec(self._codec, spec)

    def _node_facts(self, nodes: Sequence[NodeInfo]) -> dict[str, NodeFact]:
        decay = 0.8 if self._spec.weighting is None else self._spec.weighting.history_decay
        history = self.ledger.history(decay)
        out: dict[str, NodeFact] = {}
        for n in nodes:
            fact = self._facts(n.node_id)
            h = history.get(n.node_id, 0.0)
            if fact is not None:
                out[n.node_id] = NodeFact(fact.num_samples, fact.quality, h)
            elif n.node_id in history and self.policy.formula is not None:
                # no dataset profile: no sample cap, the default quality, its history
                quality = self.policy.formula.default_quality
                out[n.node_id] = NodeFact(_NO_CAP, quality, h)
        return out

    def collector(
        self, round_no: int, weights: Weights, nodes: Sequence[NodeInfo]
    ) -> RoundCollector:
        """The round's aggregator: the strategy's, behind weighting and screening."""
        facts = self._node_facts(nodes)
        if isinstance(self._strategy, QualityWeighted):
            self._strategy.set_facts(facts)
        self._wire = self._decoded = 0
        return self.policy.collector(
            round_no,
            weights,
            lambda: self._strategy.aggregator(weights, round_no),
            facts=facts,
            keep_updates=self._contribution_due(round_no),
        )

    # ---- during the round -------------------------------------------------------------
    def decode(self, outcome: TaskOutcome, spec: Sequence[TensorSpec]) -> Weights:
        """The delta a fit answer carries (decoded when the job compresses)."""
        assert outcome.weights is not None
        self._wire += outcome.bytes_up
        if self._codec is None:
            self._decoded += outcome.bytes_up
            return outcome.weights
        try:
            delta = self._codec.decode(outcome.weights, spec)
        except PayloadError as exc:
            raise UpdateRejected(exc.reason, f"{self._codec.name} update: {exc.detail}") from exc
        if len(delta) == 0:
            raise UpdateRejected(RejectReason.MISSING_TENSOR, "the decoded update is empty")
        self._decoded += delta.nbytes
        return delta

    # ---- after the round --------------------------------------------------------------
    def _contribution_due(self, round_no: int) -> bool:
        c = self._spec.contribution
        return c is not None and (round_no % c.every == 0 or round_no == self._spec.rounds)

    async def details(
        self,
        round_no: int,
        old: Weights,
        collector: RoundCollector,
        metrics: Mapping[str, float],
        departments: Mapping[str, str],
    ) -> RoundDetails:
        """Weights, flags, contributions and anomaly attribution of a finished round."""
        out = collector.outcome()
        weights = out.weights
        if isinstance(self._strategy, QualityWeighted):
            weights = _strategy_weights(self._strategy, weights)
        contribution: RoundContribution | None = None
        note = ""
        if self._contribution_due(round_no):
            try:
                contribution = await self._contribution(round_no, old, out.folded)
            except JobError as exc:
                note = str(exc)
                log.warning("job %s round %d: no contribution: %s", self._job_id, round_no, note)
        anomaly = self._anomaly(round_no, metrics, out.sketches, departments, out.actions())
        compression = None
        if self._codec is not None:
            compression = CompressionUse(str(self._codec.name), self._wire, self._decoded)
        policy = self.policy.policy
        return RoundDetails(
            weights=weights,
            free_riders=out.flags,
            free_rider_policy=None if policy is None else str(policy),
            contribution=contribution,
            contribution_note=note,
            anomaly=anomaly,
            compression=compression,
            departments=dict(departments),
        )

    def _anomaly(
        self,
        round_no: int,
        metrics: Mapping[str, float],
        sketches: Mapping[str, Any],
        departments: Mapping[str, str],
        actions: Mapping[str, Any],
    ) -> AnomalyReport | None:
        settings = self._spec.anomaly_options().settings()
        current = metrics.get(settings.metric)
        if current is None or not sketches:
            return None
        previous, self._previous = self._previous, current
        return attribute_anomaly(
            round_no,
            previous,
            current,
            sketches,
            settings=settings,
            departments=dict(departments),
            actions=dict(actions),
        )

    async def _contribution(
        self, round_no: int, old: Weights, updates: Sequence[Any]
    ) -> RoundContribution:
        options = self._spec.contribution
        assert options is not None
        if not updates:
            raise JobError(f"round {round_no}: no update entered the aggregate")
        validators = self._validators(updates)
        loop = asyncio.get_running_loop()
        stop = threading.Event()

        def utility(weights: Weights) -> float:
            if stop.is_set():
                raise JobError("the round was stopped while contributions were measured")
            future = asyncio.run_coroutine_threadsafe(
                self._utility(round_no, weights, validators), loop
            )
            return future.result()

        try:
            return await asyncio.to_thread(
                evaluate_round,
                round_no,
                list(updates),
                utility,
                aggregate=fedavg_subset(old),
                settings=options.shapley(round_no),
            )
        finally:
            stop.set()

    def _validators(self, updates: Sequence[Any]) -> list[NodeInfo]:
        options = self._spec.contribution
        assert options is not None
        live = {n.node_id: n for n in self._gw.live_nodes()}
        wanted = options.validators or tuple(u.node_id for u in updates)
        found = [live[n] for n in wanted if n in live]
        if not found:
            raise JobError(f"no validator node is connected (wanted {', '.join(wanted)})")
        return found

    async def _utility(self, round_no: int, weights: Weights, nodes: Sequence[NodeInfo]) -> float:
        """Validators' sample-weighted holdout ``metric`` of ``weights`` (higher is better)."""
        options = self._spec.contribution
        assert options is not None
        extra: dict[str, Any] = {}
        if options.dataset is not None:
            extra[TaskKey.DATASET.value] = options.dataset
        config: dict[str, Any] = {**task_config(self._spec), **extra}

        def request(_node: NodeInfo) -> TaskRequest:
            if self._make_request is not None:  # the engine's: carries the standardizer
                return self._make_request(TaskKind.EVALUATE, round_no, extra, None)
            return TaskRequest(
                task_id=uuid.uuid4().hex,
                job_id=self._job_id,
                round_no=round_no,
                kind=TaskKind.EVALUATE,
                deadline_unix=time.time() + self._spec.round_deadline_s,
                config=config,
            )

        answers = await ask_all(
            self._gw, nodes, request, self._gw.prepare(weights), self._spec.round_deadline_s
        )
        per_node, sizes = evaluation_metrics(answers.outcomes)
        total = weight = 0.0
        for nid, values in per_node.items():
            if options.metric in values and sizes.get(nid, 0) > 0:
                total += values[options.metric] * sizes[nid]
                weight += sizes[nid]
        if weight == 0.0:
            missing = ", ".join(sorted(answers.failures)) or "none failed"
            raise JobError(
                f"no validator reported holdout metric {options.metric!r} (failed: {missing})"
            )
        value = total / weight
        return value if options.better_high() else -value

    def published(self, round_no: int, version: str, details: RoundDetails) -> None:
        """Record a completed round's details: contribution history, audit entry, events."""
        departments = {w.node_id: details.department(w.node_id) for w in details.weights}
        if details.contribution is not None:
            self.ledger.add_round(details.contribution, departments)
        body = details.to_json()
        body["round"] = round_no
        body["version"] = version
        body.pop("anomaly", None)
        if details.anomaly is not None:
            body["anomaly"] = details.anomaly.summary()
        self._audit(AUDIT_ACTION, sorted({d for d in departments.values() if d}), body)
        for flag in details.free_riders:
            self._events(
                "free_rider",
                {
                    "job_id": self._job_id,
                    "round": round_no,
                    "node_id": flag.node_id,
                    "department": details.department(flag.node_id),
                    "kind": str(flag.kind),
                    "evidence": flag.evidence,
                    "policy": details.free_rider_policy,
                },
            )
        a = details.anomaly
        if a is not None and a.triggered:
            self._events("anomaly", anomaly_event(self._job_id, a))


def anomaly_event(job_id: str, report: AnomalyReport) -> dict[str, Any]:
    """The payload of an ``anomaly`` event: what dropped and the departments that deviate."""
    return {
        "job_id": job_id,
        "round": report.round_no,
        "kind": "metric_drop",
        "metric": report.metric,
        "previous": report.previous,
        "current": report.current,
        "worsening": report.worsening,
        "summary": report.summary(),
        "suspects": [
            {
                "node_id": d.node_id,
                "department": d.department or d.node_id,
                "cosine": d.cosine,
                "norm_ratio": d.norm_ratio,
                "action": str(d.action),
            }
            for d in report.suspects
        ],
    }


def _strategy_weights(
    strategy: QualityWeighted, published: Sequence[PublishedWeight]
) -> tuple[PublishedWeight, ...]:
    """The weights a ``quality_weighted`` strategy used, in the collector's records."""
    used = strategy.last_weights()
    total = sum(nw.weight for nw in used.values())
    out = []
    for p in published:
        nw = used.get(p.node_id)
        if nw is None:
            out.append(p)
            continue
        share = nw.weight / total if total > 0 else 0.0
        out.append(PublishedWeight(p.node_id, p.num_samples, nw.weight, share, p.factor,
                                   p.action, nw.parts))  # fmt: skip
    return tuple(out)


def contribution_entries(round_no: int, details: RoundDetails) -> list[ContributionEntry]:
    """The contribution-ledger rows of one round (one per update the round received)."""
    c = details.contribution
    flags = {f.node_id: str(f.kind) for f in details.free_riders}
    return [
        ContributionEntry(
            round_no=round_no,
            node_id=w.node_id,
            department=details.department(w.node_id),
            num_samples=w.num_samples,
            weight=w.weight,
            share=w.share,
            action=str(w.action),
            free_rider=flags.get(w.node_id),
            loo=None if c is None else c.loo.get(w.node_id),
            shapley=None if c is None else c.shapley.get(w.node_id),
        )
        for w in details.weights
    ]


def contribution_records(entries: Iterable[ContributionEntry]) -> list[ContributionRecord]:
    """Stored entries as the records ``ContributionLedger`` keeps (measured rounds only)."""
    return [
        ContributionRecord(e.round_no, e.node_id, e.department, e.loo or 0.0, e.shapley)
        for e in entries
        if e.shapley is not None
    ]
