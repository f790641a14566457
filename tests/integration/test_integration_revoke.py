"""``clawfed revoke`` drops a live node within seconds; its next connection is refused."""

from __future__ import annotations

import pytest
from integration_support import (
    WAIT_S,
    Procs,
    audit,
    channel_credentials,
    enroll,
    refusals,
    run,
    run_cli,
    store,
    try_session,
    wait_until,
)

from clawfed.cli.common import admin_stub
from clawfed.coordinator.workspace import Workspace
from clawfed.governance.nodes import NodeRegistry
from clawfed.security.kit import load_kit
from clawfed.wire._proto import federation_pb2 as pb

pytestmark = pytest.mark.slow  # coordinator, node and CLI processes


def test_cli_revoke_drops_the_live_session_and_refuses_the_next_connection(
    workspace: Workspace, procs: Procs
) -> None:
    kit_path = enroll(workspace, "credit", "信贷部")
    coordinator = procs.coordinator(workspace)
    node = procs.node(kit_path, "credit-node")
    with store(workspace) as db:
        wait_until(
            lambda: [r for r in audit(db, "connect") if r.actor == "credit"],
            "the node to connect",
        )

        done = run_cli(
            "revoke", "credit", "--reason", "laptop stolen", "--workspace", str(workspace.root)
        )

        assert done.returncode == 0, done.stdout + done.stderr
        assert "its live session was dropped" in done.stdout
        # the node agent was told (goodbye "revoked") and stops for good
        node.popen.wait(timeout=WAIT_S)
        assert node.popen.returncode == 2
        assert "refused this node (revoked)" in node.output()
        assert "laptop stolen" in node.output()
        assert "Traceback" not in node.output()
        record = NodeRegistry(db).get("credit")
        assert record.revoked and record.revoke_reason == "laptop stolen"
        assert not record.connected
        [revoke] = audit(db, "node.revoke")
        assert revoke.resource == "node:credit"
        assert revoke.detail["reason"] == "laptop stolen"
        with admin_stub(workspace) as stub:
            [status] = stub.ListNodes(pb.ListNodesRequest()).nodes
        assert (status.node_id, status.connected, status.revoked) == ("credit", False, True)

        kit = load_kit(kit_path)
        creds = channel_credentials(kit.ca_cert.encode(), kit.cert.encode(), kit.key.encode())
        attempt = run(try_session(workspace.address, creds))

        assert attempt.outcome == "error"
        refused = wait_until(lambda: refusals(db, "revoked"), "a revoked refusal in the audit")
        assert [r.actor for r in refused] == ["credit"]
    coordinator.wait_for_output("gate refused")
    assert "revoked: certificate serial" in coordinator.output()
