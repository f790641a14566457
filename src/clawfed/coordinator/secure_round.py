"""Secure and differentially private rounds: SecAgg phases as tasks, DP noise, ε per version.

With ``privacy.secure_aggregation`` a round runs the four phases of Bonawitz et al. (CCS 2017;
SecAgg+ of Bell et al., CCS 2020, when configured) as one task per node and phase over the
ordinary session stream. The coordinator relays public keys and ciphertexts, adds masked
ring vectors into one running sum as they arrive (memory O(model)) and finally learns only
``Σ w_i x_i`` and ``Σ w_i``; no individual update is logged or stored, masked or not. The
round's mean delta goes to the job's strategy as one update, so FedAvg, FedAvgM and the
FedOpt family keep their server step. With ``privacy.dp`` (McMahan et al., ICLR 2018) the
deltas are clipped to C and Gaussian noise of std σ·C is added to the sum, by the
coordinator (central) or in shares by the nodes (distributed); σ comes from the accountant
and every version records the ε spent so far.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
from collections.abc import Callable, Coroutine, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from clawfed.aggregation import Strategy
from clawfed.aggregation.state import ArrayStateful
from clawfed.coordinator.diagnostics import RoundDiagnostics
from clawfed.coordinator.gateway import (
    NodeGateway,
    TaskFailed,
    TaskKind,
    TaskOutcome,
    TaskRequest,
)
from clawfed.coordinator.jobspec import JobSpec
from clawfed.coordinator.privacy_spec import NoiseMode, PrivacySpec
from clawfed.coordinator.round_records import (
    EventSink,
    JobLedger,
    Participant,
    RoundReport,
    combine_metrics,
)
from clawfed.coordinator.secure_phases import Collected, PhaseFanOut
from clawfed.coordinator.task_config import TaskKey
from clawfed.core import ConfigError, TensorSpec, Update, Weights
from clawfed.privacy.errors import SecAggError, SecAggFailure
from clawfed.privacy.secagg_config import SecAggConfig
from clawfed.privacy.secagg_messages import (
    AdvertiseKeys,
    ControlMessage,
    MaskedInput,
    ShareKeys,
    UnmaskResponse,
)
from clawfed.privacy.secagg_server import SecAggServer
from clawfed.privacy.secagg_wire import SecureKey, Weighting, message_from_weights

log = logging.getLogger("clawfed.coordinator.secure_round")

#: The node id of the round's single aggregate update handed to the strategy.
SECURE_AGGREGATE_ID = "secure-aggregate"

RequestFactory = Callable[[TaskKind, int, Mapping[str, Any], Weights | None], TaskRequest]
FinishReport = Callable[[RoundReport, Weights, RoundDiagnostics], Coroutine[Any, Any, RoundReport]]


def _sender_check(message: ControlMessage, kind: type[Any], node_id: str) -> Any:
    if not isinstance(message, kind) or getattr(message, "node_id", None) != node_id:
        raise SecAggError(
            SecAggFailure.BAD_MESSAGE,
            f"expected a {kind.__name__} signed by this node, got a {type(message).__name__}",
            node_id=node_id,
        )
    return message


def _node_dp(privacy: PrivacySpec, sigma: float, threshold: int) -> dict[str, Any]:
    """Task-config keys of the nodes' part of DP: weighting, clipping, their noise share."""
    dp = privacy.dp
    if dp is None:
        return {SecureKey.WEIGHTING.value: Weighting.SAMPLES.value}
    share = 0.0  # central: the coordinator adds all the noise to the unmasked sum
    if dp.mode is NoiseMode.DISTRIBUTED:  # any t or more shares add up to std >= σ·C
        share = sigma * dp.clip_norm / math.sqrt(threshold)
    return {
        SecureKey.WEIGHTING.value: Weighting.UNIFORM.value,
        SecureKey.DP_CLIP.value: dp.clip_norm,
        SecureKey.DP_NOISE_STD.value: share,
    }


class PrivateRounds:
    """Runs the attempts of a job whose ``privacy`` section asks for SecAgg and/or DP.

    ``request`` builds a task the way the engine does (job config, deadline), ``finish``
    adds the engine's holdout evaluation to a report.
    """

    def __init__(
        self,
        gateway: NodeGateway,
        ledger: JobLedger,
        *,
        job_id: str,
        spec: JobSpec,
        strategy: Strategy,
        events: EventSink,
        request: RequestFactory,
        finish: FinishReport,
    ) -> None:
        if spec.privacy is None or not spec.privacy.private_rounds:
            raise ConfigError(f"job {spec.name}: no secure aggregation or DP is configured")
        try:  # again: a spec made with model_copy skipped the job file's validation
            spec.privacy.check_job(spec.participants, spec.min_nodes, spec.strategy.name)
        except ValueError as exc:
            raise ConfigError(f"job {spec.name}: {exc}") from None
        self._gw = gateway
        self._ledger = ledger
        self._job_id = job_id
        self._spec = spec
        self._privacy: PrivacySpec = spec.privacy
        self._strategy = strategy
        self._events = events
        self._request = request
        self._finish = finish
        self._sigma = 0.0  # σ, set by the first attempt (the accountant loads SciPy: no
        # import or calibration on the event loop, where it would starve the heartbeats)
        self._rng = np.random.default_rng()
        self._phases = PhaseFanOut(gateway, events, job_id=job_id, job_name=spec.name)

    # ---- one attempt --------------------------------------------------------------------
    async def attempt(
        self, round_no: int, attempt: int, weights: Weights, wanted: Sequence[str] | None
    ) -> tuple[Weights, str] | str:
        """One attempt at ``round_no``: the new weights and version, or why it failed.

        Raises
        ------
        BudgetExceeded
            Before any task is sent, when this round would spend more ε than the target.
        """
        spec = self._spec
        if self._privacy.dp is not None:
            await asyncio.to_thread(self._check_budget, round_no)
        started = datetime.now(UTC)
        nodes = await self._gw.wait_for_nodes(wanted, spec.min_nodes, spec.round_deadline_s)
        got = Collected()
        if len(nodes) < spec.min_nodes:
            got.failure = f"only {len(nodes)} of min_nodes={spec.min_nodes} node(s) connected"
        else:
            chosen = self._strategy.configure(round_no, nodes)
            configs = {i.node_id: dict(i.config) for i in chosen}
            self._events(
                "round_started",
                {"job_id": self._job_id, "round": round_no, "nodes": sorted(configs)},
            )
            if self._privacy.secure:
                got = await self._secure_sum(round_no, attempt, weights, configs)
            else:
                got = await self._clipped_sum(round_no, weights, configs)
            if not got.failure and len(got.contributors) < spec.min_nodes:
                got.failure = (
                    f"only {len(got.contributors)} update(s) entered the sum, "
                    f"min_nodes={spec.min_nodes} ({len(got.dropped)} dropped, "
                    f"{len(got.rejected)} rejected)"
                )
        departments = {n.node_id: n.department for n in nodes}
        parts = [
            Participant(n, departments.get(n, ""), got.samples.get(n, 1), got.metrics.get(n, {}))
            for n in sorted(got.contributors)
        ]
        report = RoundReport(
            self._job_id, round_no, attempt, started, datetime.now(UTC), tuple(parts),
            tuple(got.dropped), tuple(got.rejected), got.bytes_down, got.bytes_up,
            combine_metrics(parts),
        )  # fmt: skip
        if got.failure or got.total is None:
            reason = got.failure or "the round produced no sum"
            final = attempt >= spec.max_retries + 1
            self._ledger.record_failed_attempt(report, reason, final=final)
            return reason
        new_weights = self._server_step(round_no, weights, got.total, got.weight)
        report = await self._finish(report, new_weights, RoundDiagnostics(weights, seed=round_no))
        spent = await asyncio.to_thread(self._spent, round_no)
        report = dataclasses.replace(report, metrics={**report.metrics, **spent})
        s = self._strategy
        arrays = s.state_arrays() if isinstance(s, ArrayStateful) else None
        version = self._ledger.complete_round(report, new_weights, s.state_dict(), arrays)
        self._events(
            "round_completed",
            {"job_id": self._job_id, "round": round_no, "version": version, "report": report},
        )
        return new_weights, version

    def _check_budget(self, round_no: int) -> None:
        """Calibrate σ once; raise ``BudgetExceeded`` if ``round_no`` would overspend."""
        dp = self._privacy.dp
        assert dp is not None
        self._sigma = dp.sigma(self._spec.rounds)
        budget = dp.budget(self._spec.rounds)
        if budget is not None:
            budget.check(round_no)

    def _spent(self, round_no: int) -> dict[str, float]:
        """The privacy facts a version records (ε after ``round_no`` rounds, δ, σ, C)."""
        dp = self._privacy.dp
        return {} if dp is None else dp.facts(self._spec.rounds, round_no)

    def _server_step(self, round_no: int, weights: Weights, total: Weights, weight: int) -> Weights:
        """Central noise (if any), the mean delta, then the strategy's own server step."""
        dp = self._privacy.dp
        if dp is not None and dp.mode is NoiseMode.CENTRAL:
            std = self._sigma * dp.clip_norm
            total = Weights(
                (n, np.asarray(a, np.float64) + self._rng.normal(0.0, std, a.shape))
                for n, a in total.items()
            )
        mean = Weights(
            (n, (np.asarray(total[n], np.float64) / weight).astype(g.dtype))
            for n, g in weights.items()
        )
        aggregator = self._strategy.aggregator(weights, round_no)
        aggregator.add(Update(SECURE_AGGREGATE_ID, weight, mean))
        new_weights = aggregator.result()
        new_weights.check_finite()
        return new_weights

    # ---- secure aggregation ---------------------------------------------------------------
    async def _secure_sum(
        self,
        round_no: int,
        attempt: int,
        weights: Weights,
        configs: Mapping[str, Mapping[str, Any]],
    ) -> Collected:
        sa = self._privacy.secure_aggregation
        assert sa is not None
        got = Collected()
        nodes = sorted(configs)
        try:
            if len(nodes) < 2:
                raise ConfigError(f"secure aggregation needs at least 2 nodes, got {len(nodes)}")
            threshold = sa.threshold_for(len(nodes))
            uniform = self._privacy.dp is not None
            cfg = SecAggConfig(
                session_id=f"{self._job_id}/{round_no}/{attempt}",
                participants=tuple(nodes),
                threshold=threshold,
                fixed_point=sa.fixed_point(len(nodes), 1 if uniform else sa.max_weight),
                model=weights.spec(),
                neighbours=sa.neighbours_for(len(nodes)),
            )
        except ConfigError as exc:
            got.failure = f"secure aggregation cannot run this round: {exc}"
            return got
        server = SecAggServer(cfg)
        base = {
            SecureKey.CONFIG.value: cfg.to_json(),
            **_node_dp(self._privacy, self._sigma, threshold),
        }
        phase_s = min(sa.phase_deadline_s, self._spec.round_deadline_s)

        def request(kind: TaskKind, nid: str, message: str | None = None) -> TaskRequest:
            config = {
                **configs[nid],
                **base,
                SecureKey.NODE_ID.value: nid,
                TaskKey.ROUND.value: round_no,
            }
            if message is not None:
                config[SecureKey.MESSAGE.value] = message
                got.bytes_down += len(message)
            return self._request(kind, round_no, config, None)

        def keys(nid: str, outcome: TaskOutcome) -> None:
            msg = _sender_check(
                message_from_weights(outcome.weights, sender=nid), AdvertiseKeys, nid
            )
            if outcome.num_samples < 1:
                raise SecAggError(
                    SecAggFailure.BAD_MESSAGE, "reported no training samples", node_id=nid
                )
            server.receive_keys(msg)
            got.samples[nid] = outcome.num_samples
            got.metrics[nid] = dict(outcome.metrics)

        def shares(nid: str, outcome: TaskOutcome) -> None:
            msg = _sender_check(message_from_weights(outcome.weights, sender=nid), ShareKeys, nid)
            server.receive_shares(msg)

        def masked(nid: str, outcome: TaskOutcome) -> None:
            if outcome.weights is None:
                raise SecAggError(SecAggFailure.BAD_MESSAGE, "sent no masked input", node_id=nid)
            bits = cfg.fixed_point.ring_bits
            server.receive_masked(
                MaskedInput.from_weights(cfg.session_id, nid, outcome.weights, bits)
            )

        def unmask(nid: str, outcome: TaskOutcome) -> None:
            msg = _sender_check(
                message_from_weights(outcome.weights, sender=nid), UnmaskResponse, nid
            )
            server.receive_unmask(msg)

        model = self._gw.prepare(weights)
        phase = "secagg_advertise"
        try:
            reqs = {n: request(TaskKind.SECAGG_ADVERTISE, n) for n in nodes}
            got.bytes_down += model.nbytes * len(reqs)
            await self._phases.run(
                round_no, phase, reqs, model, self._spec.round_deadline_s, keys, got
            )
            advertised = sorted(set(nodes) - server.awaiting())
            directory = server.close_keys().model_dump_json()
            self._phases.closed(round_no, phase, advertised)

            phase = "secagg_share"
            reqs = {n: request(TaskKind.SECAGG_SHARE, n, directory) for n in advertised}
            await self._phases.run(round_no, phase, reqs, None, phase_s, shares, got)
            inboxes = server.close_shares()
            self._phases.closed(round_no, phase, list(inboxes))

            phase = "secagg_mask"
            ring = TensorSpec(
                MaskedInput.TENSOR,
                "int32" if cfg.fixed_point.ring_bits == 32 else "int64",
                (cfg.fixed_point.vector_length(cfg.model),),
            )
            reqs = {
                n: dataclasses.replace(
                    request(TaskKind.SECAGG_MASK, n, box.model_dump_json()), expected=(ring,)
                )
                for n, box in inboxes.items()
            }
            await self._phases.run(round_no, phase, reqs, None, phase_s, masked, got)
            unmask_request = server.close_masked()
            self._phases.closed(round_no, phase, unmask_request.survivors)

            phase = "secagg_unmask"
            text = unmask_request.model_dump_json()
            reqs = {n: request(TaskKind.SECAGG_UNMASK, n, text) for n in unmask_request.survivors}
            await self._phases.run(round_no, phase, reqs, None, phase_s, unmask, got)
            result = await asyncio.to_thread(server.finish)  # PRG expansions: off the loop
            self._phases.closed(round_no, phase, result.unmasked)
        except SecAggError as exc:
            got.failure = f"secure aggregation failed in phase {phase}: {exc}"
            return got
        got.total, got.weight, got.contributors = (
            result.weighted_sum,
            result.total_weight,
            result.masked,
        )
        log.info(
            "job %s round %d: secure sum of %d node(s) unmasked (threshold %d, %d dropped)",
            self._spec.name, round_no, len(result.masked), threshold,
            len(nodes) - len(result.masked),
        )  # fmt: skip
        return got

    # ---- DP without secure aggregation --------------------------------------------------
    async def _clipped_sum(
        self, round_no: int, weights: Weights, configs: Mapping[str, Mapping[str, Any]]
    ) -> Collected:
        """Plain fit tasks; each delta is clipped to C here and added to one running sum."""
        dp = self._privacy.dp
        assert dp is not None
        got = Collected()
        acc = {n: np.zeros(a.shape, dtype=np.float64) for n, a in weights.items()}
        spec = weights.spec()
        contributors: list[str] = []

        def take(nid: str, outcome: TaskOutcome) -> None:
            delta = outcome.weights
            if delta is None:
                raise TaskFailed(nid, "node_error", "fit returned no update")
            delta.check_conforms(spec)
            delta.check_finite()
            norm = delta.l2_norm()
            factor = 1.0 if norm <= dp.clip_norm else dp.clip_norm / norm
            for name, a in acc.items():
                a += np.asarray(delta[name], dtype=np.float64) * factor
            contributors.append(nid)
            got.samples[nid] = max(outcome.num_samples, 1)

        model = self._gw.prepare(weights)
        reqs = {
            n: self._request(TaskKind.FIT, round_no, dict(c), weights) for n, c in configs.items()
        }
        got.bytes_down = model.nbytes * len(reqs)
        await self._phases.run(round_no, "fit", reqs, model, self._spec.round_deadline_s, take, got)
        got.contributors = tuple(contributors)
        if contributors:
            got.total = Weights((n, a) for n, a in acc.items())
            got.weight = len(contributors)
        return got
