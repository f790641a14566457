"""Finishing a round's report: holdout evaluation, update diagnostics, aggregation details."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

from clawfed.aggregation.round_details import RoundDetails
from clawfed.coordinator.diagnostics import RoundDiagnostics
from clawfed.coordinator.gateway import NodeGateway, TaskKind
from clawfed.coordinator.jobspec import JobSpec
from clawfed.coordinator.phases import (
    ask_all,
    describe_failures,
    evaluation_metrics,
    weighted_mean,
)
from clawfed.coordinator.round_extras import RequestFactory
from clawfed.coordinator.round_records import Exclusion, Participant, RoundReport
from clawfed.core import NodeInfo, Weights

log = logging.getLogger("clawfed.coordinator.round_finish")


class RoundFinisher:
    """Completes the report of a round whose new weights are known (sync and private rounds).

    ``request`` builds a task the way the engine does (job config, deadline).
    """

    def __init__(self, gateway: NodeGateway, spec: JobSpec, *, request: RequestFactory) -> None:
        self._gw = gateway
        self._spec = spec
        self._request = request

    async def finish(
        self, report: RoundReport, new_weights: Weights, diagnostics: RoundDiagnostics
    ) -> RoundReport:
        """Add holdout evaluation (when due) and update diagnostics to a round's report."""
        parts = list(report.participants)
        combined = dict(report.metrics)
        if self._evaluates(report.round_no):
            nodes = [NodeInfo(p.node_id, p.department or p.node_id) for p in parts]
            per_node, sizes = await self._evaluate(report.round_no, new_weights, nodes)
            parts = [
                Participant(p.node_id, p.department, p.num_samples, {
                    **{f"train_{k}": v for k, v in p.metrics.items()},
                    **per_node.get(p.node_id, {}),
                })
                for p in parts
            ]  # fmt: skip
            combined = {f"train_{k}": v for k, v in combined.items()}
            combined.update(weighted_mean(per_node, sizes))
        for node_id, (norm, cos) in diagnostics.finish(new_weights).items():
            combined[f"diag.{node_id}.norm"] = norm
            combined[f"diag.{node_id}.cosine"] = cos
        return dataclasses.replace(report, participants=tuple(parts), metrics=combined)

    async def _evaluate(
        self, round_no: int, weights: Weights, nodes: Sequence[NodeInfo]
    ) -> tuple[dict[str, dict[str, float]], dict[str, int]]:
        """Holdout metrics of ``weights`` on each node (those that answer in time)."""
        model = self._gw.prepare(weights)
        answers = await ask_all(
            self._gw, nodes, lambda _n: self._request(TaskKind.EVALUATE, round_no, {}, None),
            model, self._spec.round_deadline_s,
        )  # fmt: skip
        if answers.failures:
            log.warning("job %s round %d: evaluation missing from %s", self._spec.name,
                        round_no, describe_failures(answers.failures))  # fmt: skip
        return evaluation_metrics(answers.outcomes)

    def _evaluates(self, round_no: int) -> bool:
        every = self._spec.evaluate_every
        return every > 0 and (round_no % every == 0 or round_no == self._spec.rounds)


def with_details(report: RoundReport, details: RoundDetails) -> RoundReport:
    """``report`` with ``details``; updates left out by policy move to ``rejected``."""
    out = {w.node_id: w for w in details.weights if w.action == "rejected"}
    flags = {f.node_id: f for f in details.free_riders}
    rejected = list(report.rejected)
    for node_id in sorted(out):
        flag = flags.get(node_id)
        reason = "free_rider" if flag is not None else "zero_weight"
        why = flag.evidence if flag is not None else "its aggregation weight is 0"
        rejected.append(Exclusion(node_id, reason, why))
    return dataclasses.replace(
        report,
        participants=tuple(p for p in report.participants if p.node_id not in out),
        rejected=tuple(rejected),
        details=details,
    )
