"""``clawfed users|tokens|approvals`` and ``clawfed approve``: people, tokens and consent."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from clawfed.cli.common import console, find_workspace
from clawfed.cli.federation_cmds import WorkspaceOpt
from clawfed.core import ConfigError
from clawfed.governance.approvals import ApprovalBook
from clawfed.governance.audit import AuditLog
from clawfed.governance.policy import Action, Resource, Role, User, decide, role_of
from clawfed.governance.users import UserDirectory

users_app = typer.Typer(help="Manage the people who use clawfed.", no_args_is_help=True)
tokens_app = typer.Typer(help="Issue, list and revoke API tokens.", no_args_is_help=True)
approvals_app = typer.Typer(help="See and revoke departments' approvals.", no_args_is_help=True)

TOKEN_ENV = "CLAWFED_TOKEN"
TokenOpt = Annotated[
    str,
    typer.Option(
        "--token", envvar=TOKEN_ENV, show_envvar=True, help="Your API token (cfd_…).",
        show_default=False,
    ),
]  # fmt: skip
ReasonOpt = Annotated[str, typer.Option(help="Why (kept in the audit chain).")]


@dataclass(frozen=True)
class _Store:
    users: UserDirectory
    approvals: ApprovalBook


@contextmanager
def _open(workspace: Path | None) -> Iterator[_Store]:
    ws = find_workspace(workspace)
    with ws.database() as db:
        audit = AuditLog(db)
        yield _Store(UserDirectory(db, audit=audit), ApprovalBook(db, audit))


def _role(text: str) -> Role:
    """``--role`` as a Role; a StoreError listing the roles otherwise."""
    return role_of(text)


@users_app.command("add")
def add_user(
    user_id: Annotated[str, typer.Argument(help="Login name, e.g. hugo or hugo@corp.")],
    role: Annotated[str, typer.Option(help="data_admin, department_head, employee or auditor.")],
    department: Annotated[
        str | None, typer.Option(help="The department (a department_head needs one).")
    ] = None,
    name: Annotated[str, typer.Option(help="Display name.")] = "",
    wecom: Annotated[
        str | None, typer.Option(help="WeCom userid that speaks for this user in chat.")
    ] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Add a user (run on the coordinator's machine; recorded as done by the system)."""
    with _open(workspace) as st:
        user = st.users.create(user_id, _role(role), department=department, display_name=name)
        if wecom is not None:
            st.users.link_wecom(user.user_id, wecom)
    where = f" of {user.department}" if user.department else ""
    console.print(f"user [bold]{escape(user.user_id)}[/] added: {user.role}{escape(where)}")


@users_app.command("list")
def list_users(
    role: Annotated[str | None, typer.Option(help="Only users with this role.")] = None,
    department: Annotated[str | None, typer.Option(help="Only this department.")] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """List users with their role, department, entitlements and state."""
    with _open(workspace) as st:
        people = st.users.list(role=_role(role) if role else None, department=department)
    if not people:
        console.print("no users yet; add one with `clawfed users add USER --role data_admin`")
        return
    table = Table("user", "name", "role", "department", "model services", "state")
    for u in people:
        table.add_row(
            escape(u.user_id), escape(u.display_name), u.role.value, escape(u.department or "—"),
            escape(", ".join(sorted(u.entitlements)) or "—"),
            "disabled" if u.disabled else "active",
        )  # fmt: skip
    console.print(table)


@users_app.command("entitle")
def entitle(
    user_id: Annotated[str, typer.Argument(help="The user.")],
    job_id: Annotated[str, typer.Argument(help="The job whose model service they may use.")],
    workspace: WorkspaceOpt = None,
) -> None:
    """Let a user get predictions from a job's model service."""
    with _open(workspace) as st:
        st.users.entitle(user_id, job_id)
    console.print(f"{escape(user_id)} may now use the model service of {escape(job_id)}")


@users_app.command("disable")
def disable(
    user_id: Annotated[str, typer.Argument(help="The user.")],
    reason: ReasonOpt,
    workspace: WorkspaceOpt = None,
) -> None:
    """Disable a user: their tokens and chat identity stop working at once."""
    with _open(workspace) as st:
        st.users.disable(user_id, reason)
    console.print(f"user {escape(user_id)} disabled")


@tokens_app.command("issue")
def issue(
    user_id: Annotated[str, typer.Argument(help="Whose token.")],
    label: Annotated[str, typer.Option(help="What the token is for, e.g. 'laptop CLI'.")] = "cli",
    days: Annotated[int, typer.Option(help="Days until it expires.", min=1, max=730)] = 90,
    workspace: WorkspaceOpt = None,
) -> None:
    """Issue an API token; it is shown once, only its hash is kept."""
    with _open(workspace) as st:
        issued = st.users.issue_token(user_id, label=label, expires_in=timedelta(days=days))
    console.print(
        f"token {issued.info.public_id} for {escape(user_id)}, expires "
        f"{issued.info.expires_at:%Y-%m-%d}; it is shown only now:",
        highlight=False,
    )
    typer.echo(issued.token)


@tokens_app.command("list")
def list_tokens(
    user_id: Annotated[str, typer.Argument(help="Whose tokens.")],
    workspace: WorkspaceOpt = None,
) -> None:
    """List a user's tokens (never their secrets)."""
    with _open(workspace) as st:
        tokens = st.users.tokens(user_id)
    table = Table("token", "label", "created", "expires", "revoked")
    for t in tokens:
        revoked = f"{t.revoked_at:%Y-%m-%d} ({t.revoke_reason})" if t.revoked_at else "—"
        table.add_row(
            t.public_id, escape(t.label), f"{t.created_at:%Y-%m-%d}", f"{t.expires_at:%Y-%m-%d}",
            escape(revoked),
        )  # fmt: skip
    console.print(table)


@tokens_app.command("revoke")
def revoke_token(
    token_id: Annotated[str, typer.Argument(help="The token's id (cfd_<16 hex>).")],
    reason: ReasonOpt,
    workspace: WorkspaceOpt = None,
) -> None:
    """Revoke an API token; it is refused from now on."""
    with _open(workspace) as st:
        info = st.users.revoke_token(token_id, reason)
    console.print(f"token {info.public_id} revoked")


def _me(st: _Store, token: str) -> User:
    if not token:
        raise ConfigError(f"this command acts as you: pass --token or set {TOKEN_ENV}")
    return st.users.authenticate(token)


def approve(
    job_id: Annotated[str, typer.Argument(help="The job asking to use your department's data.")],
    department: Annotated[str, typer.Option(help="Your department.")],
    purpose: Annotated[str, typer.Option(help="The purpose you approve (as requested).")],
    token: TokenOpt = "",
    workspace: WorkspaceOpt = None,
) -> None:
    """As a department's head, let JOB use the department's data for PURPOSE."""
    with _open(workspace) as st:
        a = st.approvals.approve(_me(st, token), job_id, department, purpose)
    console.print(
        f"{escape(a.department)} approved job [bold]{escape(a.job_id)}[/] for "
        f"{escape(a.purpose)!r}; its node joins from the next round"
    )


@approvals_app.command("list")
def list_approvals(
    job_id: Annotated[str | None, typer.Option("--job", help="Only this job.")] = None,
    token: TokenOpt = "",
    workspace: WorkspaceOpt = None,
) -> None:
    """List approvals you may see (all of a job's, or the pending ones)."""
    with _open(workspace) as st:
        me = _me(st, token)
        items = st.approvals.for_job(job_id) if job_id else st.approvals.pending_for(me)
    shown = [
        a for a in items
        if decide(me, Action.VIEW_APPROVALS, Resource.approval(a.job_id, a.department)).allowed
    ]  # fmt: skip
    if not shown:
        console.print("no approvals to show")
        return
    table = Table("job", "department", "purpose", "status", "decided by", "reason")
    for a in shown:
        table.add_row(
            escape(a.job_id), escape(a.department), escape(a.purpose), a.status.value,
            escape(a.decided_by or "—"), escape(a.reason or ""),
        )  # fmt: skip
    console.print(table)


@approvals_app.command("revoke")
def revoke_approval(
    job_id: Annotated[str, typer.Argument(help="The job.")],
    department: Annotated[str, typer.Option(help="The department withdrawing.")],
    reason: ReasonOpt,
    token: TokenOpt = "",
    workspace: WorkspaceOpt = None,
) -> None:
    """Withdraw a department's approval: its node leaves the job from the next round."""
    with _open(workspace) as st:
        a = st.approvals.revoke(_me(st, token), job_id, department, reason)
    console.print(
        f"approval of {escape(a.department)} for job {escape(a.job_id)} revoked; "
        "its node leaves from the next round"
    )


def register(app: typer.Typer) -> None:
    """Add ``users``, ``tokens``, ``approvals`` and ``approve`` to the top-level app."""
    app.add_typer(users_app, name="users")
    app.add_typer(tokens_app, name="tokens")
    app.add_typer(approvals_app, name="approvals")
    app.command()(approve)
