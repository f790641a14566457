"""An in-process ``NodeGateway``: nodes are Python callables; for tests and simulations."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from clawfed.coordinator.gateway import (
    FailureCode,
    OutboundModel,
    TaskFailed,
    TaskOutcome,
    TaskRequest,
    deliver,
    validate_returned,
)
from clawfed.core import NodeInfo, Weights

#: A simulated node: given the request and the global weights, produce an outcome.
NodeBehaviour = Callable[[TaskRequest, Weights | None], Awaitable[TaskOutcome]]


@dataclass(frozen=True)
class _Model:
    weights: Weights

    @property
    def nbytes(self) -> int:
        return self.weights.nbytes


class MemoryGateway:
    """Nodes live in this process; outcomes are validated exactly as over the wire."""

    def __init__(self) -> None:
        self._nodes: dict[str, tuple[NodeInfo, NodeBehaviour]] = {}
        self._changed = asyncio.Event()
        self.cancelled: list[tuple[str, str]] = []

    def connect(self, info: NodeInfo, behaviour: NodeBehaviour) -> None:
        """Bring a node online."""
        self._nodes[info.node_id] = (info, behaviour)
        self._changed.set()

    def disconnect(self, node_id: str) -> None:
        """Take a node offline."""
        self._nodes.pop(node_id, None)

    def live_nodes(self) -> list[NodeInfo]:
        return sorted((info for info, _ in self._nodes.values()), key=lambda n: n.node_id)

    async def wait_for_nodes(
        self, wanted: Sequence[str] | None, count: int, timeout_s: float
    ) -> list[NodeInfo]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            found = [n for n in self.live_nodes() if wanted is None or n.node_id in wanted]
            remaining = deadline - loop.time()
            if len(found) >= count or remaining <= 0:
                return found
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                pass

    def prepare(self, weights: Weights) -> _Model:
        return _Model(weights)

    async def run_task(
        self, node_id: str, request: TaskRequest, model: OutboundModel | None
    ) -> TaskOutcome:
        entry = self._nodes.get(node_id)
        if entry is None:
            raise TaskFailed(node_id, FailureCode.NOT_CONNECTED, "the node is not connected")
        outcome = await entry[1](request, None if model is None else model.weights)
        if outcome.weights is not None:
            validate_returned(outcome.weights, request.expected)
        return deliver(request, outcome)

    async def cancel(self, node_id: str, task_id: str, reason: str) -> None:
        del reason
        self.cancelled.append((node_id, task_id))
