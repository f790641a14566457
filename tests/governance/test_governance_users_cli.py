"""``clawfed users|tokens|approvals`` and ``clawfed approve`` on a workspace's store (both DBs)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clawfed.cli.main import app
from clawfed.core.errors import ClawfedError, NotFoundError
from clawfed.governance import AuditLog, JobStore
from clawfed.governance.approvals import ApprovalBook, ApprovalStatus
from clawfed.governance.users import AuthenticationError, UserDirectory

PURPOSE = "fraud detection"


@pytest.fixture
def ws(tmp_path: Path, db_url: str) -> Path:
    from clawfed.coordinator.workspace import init_workspace

    root = tmp_path / "ws"
    init_workspace(root, port=0, database_url=db_url)
    return root


def _cli(ws: Path, *args: str, token: str | None = None) -> str:
    env = {"COLUMNS": "300", "NO_COLOR": "1"} | ({"CLAWFED_TOKEN": token} if token else {})
    result = CliRunner(env=env).invoke(app, [*args, "--workspace", str(ws)])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return " ".join(re.sub(r"[\u2500-\u257f]", " ", result.output).split())


def test_admins_add_users_and_issue_tokens(ws: Path) -> None:
    out = _cli(ws, "users", "add", "hugo", "--role", "department_head", "--department",
               "credit", "--name", "Hugo", "--wecom", "HuGo")  # fmt: skip
    assert out == "user hugo added: department_head of credit"
    _cli(ws, "users", "add", "emma", "--role", "employee")
    listing = _cli(ws, "users", "list")
    assert "hugo Hugo department_head credit" in listing and "emma" in listing
    assert "hugo" not in _cli(ws, "users", "list", "--role", "employee")
    issued = _cli(ws, "tokens", "issue", "hugo", "--label", "laptop", "--days", "7")
    token = issued.split()[-1]
    from clawfed.coordinator.workspace import open_workspace

    with open_workspace(ws).database() as db:
        users = UserDirectory(db)
        assert users.authenticate(token).user_id == "hugo"
        assert users.user_by_wecom("hugo").user_id == "hugo"
        public = users.tokens("hugo")[0].public_id
        assert public in issued and token not in _cli(ws, "tokens", "list", "hugo")
        assert "laptop" in _cli(ws, "tokens", "list", "hugo")
        _cli(ws, "tokens", "revoke", public, "--reason", "lost")
        with pytest.raises(AuthenticationError, match="revoked"):
            users.authenticate(token)
        changes = [r.detail["change"] for r in AuditLog(db).list(action="user.manage")]
        assert changes == ["create", "link_wecom", "create", "issue_token", "revoke_token"]
    assert _cli(ws, "users", "disable", "emma", "--reason", "left") == "user emma disabled"
    assert "emma employee — — disabled" in _cli(ws, "users", "list", "--role", "employee")


def test_bad_input_names_the_rule(ws: Path) -> None:
    with pytest.raises(ClawfedError, match="role must be one of data_admin"):
        _cli(ws, "users", "add", "x", "--role", "boss")
    with pytest.raises(ClawfedError, match="needs a department"):
        _cli(ws, "users", "add", "x", "--role", "department_head")
    with pytest.raises(NotFoundError, match="user 'nobody' does not exist"):
        _cli(ws, "tokens", "issue", "nobody")
    with pytest.raises(ClawfedError, match="pass --token or set CLAWFED_TOKEN"):
        _cli(ws, "approve", "j", "--department", "credit", "--purpose", PURPOSE)
    with pytest.raises(AuthenticationError, match="malformed"):
        _cli(ws, "approve", "j", "--department", "credit", "--purpose", PURPOSE, token="nope")


def test_a_head_approves_and_revokes_from_the_cli(ws: Path) -> None:
    _cli(ws, "users", "add", "hugo", "--role", "department_head", "--department", "credit")
    _cli(ws, "users", "add", "rita", "--role", "department_head", "--department", "risk")
    hugo = _cli(ws, "tokens", "issue", "hugo").split()[-1]
    rita = _cli(ws, "tokens", "issue", "rita").split()[-1]
    from clawfed.coordinator.workspace import open_workspace

    with open_workspace(ws).database() as db:
        JobStore(db).create("fraud", "fraud", "", 3)
        book = ApprovalBook(db, AuditLog(db))
        for dept in ("credit", "risk"):
            book.request("fraud", dept, PURPOSE)
        assert "fraud credit fraud detection pending" in _cli(ws, "approvals", "list", token=hugo)
        assert "risk" not in _cli(ws, "approvals", "list", token=hugo)
        out = _cli(ws, "approve", "fraud", "--department", "credit", "--purpose", PURPOSE,
                   token=hugo)  # fmt: skip
        assert "credit approved job fraud for 'fraud detection'" in out
        assert book.get("fraud", "credit").status is ApprovalStatus.APPROVED
        with pytest.raises(ClawfedError, match="rita may not approval.grant"):
            _cli(ws, "approve", "fraud", "--department", "credit", "--purpose", PURPOSE,
                 token=rita)  # fmt: skip
        every = _cli(ws, "approvals", "list", "--job", "fraud", token=hugo)
        assert "approved hugo" in every and "risk" not in every
        _cli(ws, "approvals", "revoke", "fraud", "--department", "credit", "--reason", "audit",
             token=hugo)  # fmt: skip
        revoked = book.get("fraud", "credit")
        assert (revoked.status, revoked.decided_by, revoked.reason) == (
            ApprovalStatus.REVOKED, "hugo", "audit",
        )  # fmt: skip
        assert "risk fraud detection pending" in _cli(ws, "approvals", "list", token=rita)
