"""Who may connect: every refusal is a log line and an audit record naming the reason."""

from __future__ import annotations

import logging

import pytest
from conftest import WorkspaceFactory
from integration_support import (
    Attempt,
    channel_credentials,
    enroll,
    refusals,
    run,
    running_coordinator,
    store,
    try_admin_call,
    try_session,
    until,
)

from clawfed.coordinator.workspace import Workspace
from clawfed.core import RefusalReason
from clawfed.governance.audit import AuditRecord
from clawfed.governance.nodes import NodeRegistry
from clawfed.security.kit import load_kit
from clawfed.security.pki import create_ca, issue_node_cert


def _refused(ws: Workspace, reason: RefusalReason, connect: str) -> tuple[Attempt, AuditRecord]:
    """Start the coordinator, run one ``connect`` attempt, return it with its audit record."""

    async def scenario() -> tuple[Attempt, AuditRecord]:
        kit = load_kit(enroll(ws, "credit", "信贷部"))
        ca = kit.ca_cert.encode()
        async with running_coordinator(ws) as c:
            address = ws.address
            if connect == "foreign_ca":
                foreign = issue_node_cert(create_ca("someone else's CA"), "credit", "信贷部")
                creds = channel_credentials(ca, foreign.cert_pem, foreign.key_pem)
                attempt = await try_session(address, creds)
            elif connect == "no_cert":
                attempt = await try_session(address, channel_credentials(ca))
            elif connect == "revoked":
                NodeRegistry(c.db).revoke("credit", "laptop stolen")
                creds = channel_credentials(ca, kit.cert.encode(), kit.key.encode())
                attempt = await try_session(address, creds)
            elif connect == "node_stream_with_admin_cert":
                admin = ws.admin()
                attempt = await try_session(
                    address, channel_credentials(ca, admin.cert_pem, admin.key_pem)
                )
            elif connect == "admin_call_with_node_cert":
                creds = channel_credentials(ca, kit.cert.encode(), kit.key.encode())
                attempt = await try_admin_call(address, creds)
            elif connect == "never_enrolled":
                stranger = issue_node_cert(ws.ca(), "ghost", "信贷部")
                creds = channel_credentials(ca, stranger.cert_pem, stranger.key_pem)
                attempt = await try_session(address, creds)
            elif connect == "outside_allowlist":
                creds = channel_credentials(ca, kit.cert.encode(), kit.key.encode())
                attempt = await try_session(address, creds)
            else:
                raise AssertionError(connect)
            records = await until(
                lambda: refusals(c.db, str(reason)), f"an audit record of a {reason} refusal"
            )
            assert c.hub.live_nodes() == []
        return attempt, records[-1]

    return run(scenario())


CASES = [
    ("foreign_ca", RefusalReason.UNKNOWN_CA, "failed verification"),
    ("no_cert", RefusalReason.NO_CERTIFICATE, "sent no certificate"),
    ("revoked", RefusalReason.REVOKED, "is revoked"),
    ("node_stream_with_admin_cert", RefusalReason.NOT_A_NODE, "role is admin"),
    ("admin_call_with_node_cert", RefusalReason.NOT_AN_ADMIN, "without an admin certificate"),
    ("never_enrolled", RefusalReason.UNKNOWN_NODE, "no node with this id is enrolled"),
]


@pytest.mark.parametrize(("connect", "reason", "detail"), CASES, ids=[c[0] for c in CASES])
def test_refused_peer_is_logged_and_audited_with_its_reason(
    workspace: Workspace,
    caplog: pytest.LogCaptureFixture,
    connect: str,
    reason: RefusalReason,
    detail: str,
) -> None:
    caplog.set_level(logging.WARNING)

    attempt, record = _refused(workspace, reason, connect)

    assert attempt.outcome == "error", attempt
    assert record.outcome == "refused"
    assert record.detail["reason"] == reason.value
    assert detail in record.detail["detail"]
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("refused" in line and reason.value in line for line in lines), lines
    if connect in ("node_stream_with_admin_cert", "admin_call_with_node_cert", "never_enrolled"):
        assert attempt.code == "PERMISSION_DENIED"


def test_peer_outside_the_allowlist_is_refused_before_tls(
    workspace_factory: WorkspaceFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    ws = workspace_factory(allowlist=("10.0.0.0/8",))

    attempt, record = _refused(ws, RefusalReason.IP_NOT_ALLOWED, "outside_allowlist")

    assert attempt.outcome == "error"
    assert record.detail["reason"] == "ip_not_allowed"
    assert "127.0.0.1 is outside the allowlist" in record.detail["detail"]
    assert record.actor == "ip:127.0.0.1"
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("ip_not_allowed" in line and "127.0.0.1" in line for line in lines), lines


def test_enrolled_node_is_admitted_and_audited_as_connected(workspace: Workspace) -> None:
    """The control case: the same client code with a valid kit gets a welcome."""

    async def scenario() -> Attempt:
        kit = load_kit(enroll(workspace, "credit", "信贷部"))
        async with running_coordinator(workspace) as c:
            creds = channel_credentials(kit.ca_cert.encode(), kit.cert.encode(), kit.key.encode())
            attempt = await try_session(workspace.address, creds)
            assert refusals(c.db) == []
        return attempt

    assert run(scenario()).outcome == "welcome"
    with store(workspace) as db:
        assert refusals(db) == []
