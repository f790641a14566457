"""Protocol version mismatch: the node gets a clear error, the coordinator logs and audits it."""

from __future__ import annotations

import asyncio
import logging

import pytest
from integration_support import WAIT_S, credentials, enroll, refusals, run, running_coordinator

from clawfed import PROTOCOL_VERSION
from clawfed.coordinator.workspace import Workspace
from clawfed.core import ProtocolVersionMismatch
from clawfed.governance.audit import AuditRecord
from clawfed.node.agent import NodeAgent
from clawfed.node.runner import NoopRunner


def test_node_of_another_protocol_version_is_told_why_and_audited(
    workspace: Workspace, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    kit = enroll(workspace, "credit", "信贷部")

    async def scenario() -> tuple[ProtocolVersionMismatch, list[AuditRecord], int]:
        async with running_coordinator(workspace) as c:
            agent = NodeAgent(credentials(kit), NoopRunner(), protocol_version=999)
            with pytest.raises(ProtocolVersionMismatch) as caught:
                await asyncio.wait_for(agent.run(asyncio.Event()), WAIT_S)
            return caught.value, refusals(c.db, "protocol_mismatch"), len(c.hub.live_nodes())

    error, records, live = run(scenario())

    assert (error.ours, error.theirs) == (999, PROTOCOL_VERSION)
    text = str(error)
    assert "v999" in text and f"v{PROTOCOL_VERSION}" in text, text
    assert live == 0
    assert len(records) == 1
    assert records[0].actor == "credit"
    assert records[0].detail["detail"] == f"node speaks v999, coordinator v{PROTOCOL_VERSION}"
    lines = [r.getMessage() for r in caplog.records if r.name == "clawfed.coordinator"]
    assert any("protocol_mismatch" in line and "v999" in line for line in lines), lines
