"""The task fan-out of a private round's phases: one task per node, collected until the deadline."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence

from clawfed.coordinator.gateway import (
    NodeGateway,
    OutboundModel,
    TaskFailed,
    TaskOutcome,
    TaskRequest,
)
from clawfed.coordinator.round_records import EventSink, Exclusion
from clawfed.core import UpdateRejected, Weights
from clawfed.privacy.errors import SecAggError

log = logging.getLogger("clawfed.coordinator.secure_phases")

Take = Callable[[str, TaskOutcome], None]


@dataclasses.dataclass
class Collected:
    """What the nodes' answers of one attempt came to (never an individual update)."""

    total: Weights | None = None  # Σ w_i x_i (float64)
    weight: int = 0  # Σ w_i
    contributors: tuple[str, ...] = ()
    samples: dict[str, int] = dataclasses.field(default_factory=dict)
    metrics: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)
    dropped: list[Exclusion] = dataclasses.field(default_factory=list)
    rejected: list[Exclusion] = dataclasses.field(default_factory=list)
    bytes_up: int = 0
    bytes_down: int = 0
    failure: str = ""


class PhaseFanOut:
    """Sends the tasks of one phase of a private round and reports who dropped out or was rejected.

    Every drop and rejection becomes a ``node_dropped`` event of ``events``.
    """

    def __init__(
        self, gateway: NodeGateway, events: EventSink, *, job_id: str, job_name: str
    ) -> None:
        self._gw = gateway
        self._events = events
        self._job_id = job_id
        self._job_name = job_name

    async def run(
        self,
        round_no: int,
        phase: str,
        requests: Mapping[str, TaskRequest],
        model: OutboundModel | None,
        deadline_s: float,
        take: Take,
        got: Collected,
    ) -> None:
        """Send one task per node; ``take`` each answer as it arrives, until the deadline."""
        live = {n.node_id for n in self._gw.live_nodes()}
        for nid in sorted(set(requests) - live):  # gone since the last phase: do not write
            detail = "the node's session ended before this phase"
            self._exclude(round_no, got.dropped, Exclusion(nid, f"{phase}: disconnected", detail))
        tasks = {
            asyncio.create_task(self._gw.run_task(nid, req, model)): nid
            for nid, req in requests.items()
            if nid in live
        }
        pending = set(tasks)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + deadline_s
        try:
            while pending and (remaining := deadline - loop.time()) > 0:
                done, pending = await asyncio.wait(
                    pending, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
                for task in done:
                    self._take(round_no, phase, tasks[task], task, take, got)
        except asyncio.CancelledError:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            raise
        for task in pending:
            task.cancel()
            nid = tasks[task]
            await self._gw.cancel(nid, requests[nid].task_id, f"{phase} deadline passed")
            detail = f"no answer within the {phase} deadline of {deadline_s:g} s"
            self._exclude(round_no, got.dropped, Exclusion(nid, f"{phase}: straggler", detail))
        await asyncio.gather(*pending, return_exceptions=True)

    def _take(
        self,
        round_no: int,
        phase: str,
        node_id: str,
        task: asyncio.Task[TaskOutcome],
        take: Take,
        got: Collected,
    ) -> None:
        try:
            outcome = task.result()
            got.bytes_up += outcome.bytes_up
            take(node_id, outcome)
        except TaskFailed as exc:
            self._exclude(
                round_no, got.dropped, Exclusion(node_id, f"{phase}: {exc.code}", exc.detail)
            )
        except (UpdateRejected, SecAggError) as exc:
            self._exclude(
                round_no, got.rejected, Exclusion(node_id, f"{phase}: {exc.reason}", exc.detail)
            )
        except Exception as exc:  # a stream that broke under the write (grpc's own errors)
            log.warning("%s: %s task failed: %s", node_id, phase, type(exc).__name__)
            detail = f"the stream broke ({type(exc).__name__})"
            self._exclude(
                round_no, got.dropped, Exclusion(node_id, f"{phase}: disconnected", detail)
            )

    def _exclude(self, round_no: int, into: list[Exclusion], what: Exclusion) -> None:
        into.append(what)
        self._events("node_dropped", {
            "job_id": self._job_id, "round": round_no, "node_id": what.node_id,
            "reason": what.reason, "detail": what.detail,
        })  # fmt: skip

    def closed(self, round_no: int, phase: str, nodes: Sequence[str]) -> None:
        """Log and announce (``secagg_phase``) that ``phase`` closed with ``nodes``."""
        log.info(
            "job %s round %d: %s closed with %d node(s)",
            self._job_name,
            round_no,
            phase,
            len(nodes),
        )
        self._events(
            "secagg_phase",
            {"job_id": self._job_id, "round": round_no, "phase": phase, "nodes": sorted(nodes)},
        )
