"""The permission policy: every action for every role, own department and another one."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from clawfed.core.errors import StoreError
from clawfed.governance import AuditLog, Database
from clawfed.governance.policy import (
    RULES,
    Action,
    Decision,
    PermissionDenied,
    Resource,
    Role,
    User,
    audit_decision,
    decide,
    render_permissions_markdown,
    require,
)

ADMIN = User("ada", Role.DATA_ADMIN)
HEAD = User("hugo", Role.DEPARTMENT_HEAD, "credit", entitlements=frozenset({"credit-risk"}))
EMPLOYEE = User("emma", Role.EMPLOYEE, "credit", entitlements=frozenset({"credit-risk"}))
AUDITOR = User("otto", Role.AUDITOR)
USERS = {"admin": ADMIN, "head": HEAD, "employee": EMPLOYEE, "auditor": AUDITOR}


def _dept(make: Callable[[str], Resource]) -> Callable[[User, bool], Resource]:
    return lambda _user, own: make("credit" if own else "risk")


_SERVICE: Callable[[User, bool], Resource] = lambda _u, own: Resource.model_service(  # noqa: E731
    "credit-risk" if own else "churn"
)
_SELF_PROFILE: Callable[[User, bool], Resource] = lambda u, own: Resource.user(  # noqa: E731
    u.user_id if own else "someone-else"
)
_SELF_TRANSCRIPT: Callable[[User, bool], Resource] = lambda u, own: Resource.transcript(  # noqa: E731
    u.user_id if own else "someone-else"
)

#: For each action: the resource in the actor's own scope (own=True) and outside it.
SCENARIOS: dict[Action, Callable[[User, bool], Resource]] = {
    Action.VIEW_OVERVIEW: _dept(lambda d: Resource.overview([d])),
    Action.VIEW_NODE: _dept(lambda d: Resource.node(f"{d}-1", d)),
    Action.VIEW_DATASETS: _dept(lambda d: Resource.node(f"{d}-1", d)),
    Action.ENROLL_NODE: _dept(lambda d: Resource.node(f"{d}-1", d)),
    Action.REVOKE_NODE: _dept(lambda d: Resource.node(f"{d}-1", d)),
    Action.VIEW_JOB: _dept(lambda d: Resource.job("credit-risk", [d])),
    Action.SUBMIT_JOB: _dept(lambda d: Resource.job("credit-risk", [d])),
    Action.CANCEL_JOB: _dept(lambda d: Resource.job("credit-risk", [d])),
    Action.VIEW_APPROVALS: _dept(lambda d: Resource.approval("credit-risk", d)),
    Action.REQUEST_APPROVAL: _dept(lambda d: Resource.approval("credit-risk", d)),
    Action.APPROVE_JOB: _dept(lambda d: Resource.approval("credit-risk", d)),
    Action.REVOKE_APPROVAL: _dept(lambda d: Resource.approval("credit-risk", d)),
    Action.VIEW_VERSIONS: _dept(lambda d: Resource.job("credit-risk", [d])),
    Action.EXPORT_MODEL: _dept(lambda d: Resource.job("credit-risk", [d])),
    Action.USE_MODEL_SERVICE: _SERVICE,
    Action.VIEW_CONTRIBUTIONS: _dept(lambda d: Resource.job("credit-risk", [d])),
    Action.VIEW_REPORT: _dept(lambda d: Resource.department(d, "report")),
    Action.VIEW_AUDIT: _dept(lambda d: Resource.audit([d])),
    Action.VERIFY_AUDIT: _dept(lambda d: Resource.audit([d])),
    Action.VIEW_USER: _SELF_PROFILE,
    Action.MANAGE_USERS: _SELF_PROFILE,
    Action.ASK_CHAT: _dept(lambda d: Resource.job("credit-risk", [d])),
    Action.VIEW_CHAT_TRANSCRIPT: _SELF_TRANSCRIPT,
    Action.VIEW_METRICS: _dept(lambda d: Resource.overview([d])),
}

#: The expected decisions, written out by hand: "<own><other>" per role, Y = allowed.
#: Roles in order: data_admin, department_head (credit), employee (credit), auditor.
EXPECTED: dict[Action, str] = {
    Action.VIEW_OVERVIEW: "YY YN NN NN",
    Action.VIEW_NODE: "YY YN NN NN",
    Action.VIEW_DATASETS: "YY YN NN NN",
    Action.ENROLL_NODE: "YY NN NN NN",
    Action.REVOKE_NODE: "YY NN NN NN",
    Action.VIEW_JOB: "YY YN NN NN",
    Action.SUBMIT_JOB: "YY NN NN NN",
    Action.CANCEL_JOB: "YY NN NN NN",
    Action.VIEW_APPROVALS: "YY YN NN YY",
    Action.REQUEST_APPROVAL: "YY NN NN NN",
    Action.APPROVE_JOB: "NN YN NN NN",
    Action.REVOKE_APPROVAL: "YY YN NN NN",
    Action.VIEW_VERSIONS: "YY YN NN NN",
    Action.EXPORT_MODEL: "YY NN NN NN",
    Action.USE_MODEL_SERVICE: "YY YN YN NN",
    Action.VIEW_CONTRIBUTIONS: "YY YN NN NN",
    Action.VIEW_REPORT: "YY YN NN NN",
    Action.VIEW_AUDIT: "YY YN NN YY",
    Action.VERIFY_AUDIT: "YY NN NN YY",
    Action.VIEW_USER: "YY YN YN YN",
    Action.MANAGE_USERS: "YY NN NN NN",
    Action.ASK_CHAT: "YY YN NN NN",
    Action.VIEW_CHAT_TRANSCRIPT: "YY YN YN YN",
    Action.VIEW_METRICS: "YY NN NN NN",
}


def test_the_tables_cover_every_action() -> None:
    assert set(EXPECTED) == set(Action) == set(SCENARIOS) == set(RULES)


@pytest.mark.parametrize("action", list(Action))
@pytest.mark.parametrize("who", list(USERS))
def test_every_action_role_and_scope(action: Action, who: str) -> None:
    user = USERS[who]
    want = EXPECTED[action].split()[list(USERS).index(who)]
    for own, flag in ((True, want[0]), (False, want[1])):
        resource = SCENARIOS[action](user, own)
        decision = decide(user, action, resource)
        scope = "own" if own else "other"
        assert decision.allowed is (flag == "Y"), f"{who} {action} {scope}: {decision.reason}"
        assert decision.reason.strip()


def test_reasons_name_the_rule() -> None:
    d = decide(HEAD, Action.VIEW_NODE, Resource.node("r1", "risk"))
    assert "credit" in d.reason and "risk" in d.reason
    d = decide(HEAD, Action.VIEW_OVERVIEW, Resource.federation())
    assert "whole federation" in d.reason
    d = decide(ADMIN, Action.APPROVE_JOB, Resource.approval("j", "credit"))
    assert "only the department's head" in d.reason
    d = decide(EMPLOYEE, Action.USE_MODEL_SERVICE, Resource.model_service("churn"))
    assert "not entitled" in d.reason and "churn" in d.reason
    d = decide(EMPLOYEE, Action.ENROLL_NODE, Resource.node("c1", "credit"))
    assert d.reason.startswith("an employee may not enroll")
    assert decide(ADMIN, Action.ENROLL_NODE, Resource.federation()).reason.startswith(
        "a data_admin may enroll"
    )


def test_a_head_sees_nothing_spanning_another_department() -> None:
    both = Resource.job("credit-risk", ["credit", "risk"])
    assert not decide(HEAD, Action.VIEW_JOB, both).allowed
    assert decide(HEAD, Action.VIEW_JOB, Resource.job("credit-risk", ["credit"])).allowed
    assert not decide(HEAD, Action.VIEW_JOB, Resource.job("credit-risk")).allowed
    assert not decide(HEAD, Action.VIEW_AUDIT, Resource.audit()).allowed


def test_employees_see_only_their_model_services() -> None:
    assert decide(EMPLOYEE, Action.USE_MODEL_SERVICE, Resource.model_service("credit-risk")).allowed
    # A resource revealing a department's data is refused even for an entitled job.
    sliced = Resource("service:credit-risk", frozenset({"credit"}), job_id="credit-risk")
    assert not decide(EMPLOYEE, Action.USE_MODEL_SERVICE, sliced).allowed
    assert not decide(EMPLOYEE, Action.VIEW_NODE, Resource.node("c1", "credit")).allowed


def test_chat_questions_are_scoped_to_what_the_asker_may_see() -> None:
    general = Resource("question:help")
    entitled = Resource("question:credit-risk", job_id="credit-risk")
    other_job = Resource("question:churn", job_id="churn")
    expect = {
        "admin": (True, True, True),
        "head": (True, False, False),
        "employee": (True, True, False),
        "auditor": (True, False, False),
    }
    for who, want in expect.items():
        got = tuple(
            decide(USERS[who], Action.ASK_CHAT, r).allowed for r in (general, entitled, other_job)
        )
        assert got == want, who


def test_a_disabled_user_may_do_nothing() -> None:
    gone = User("ada", Role.DATA_ADMIN, disabled_at=datetime(2026, 1, 1, tzinfo=UTC))
    for action in Action:
        d = decide(gone, action, Resource.federation())
        assert not d.allowed and "disabled" in d.reason


def test_require_raises_permission_denied_with_the_decision() -> None:
    assert require(ADMIN, Action.EXPORT_MODEL, Resource.job("j")).allowed
    with pytest.raises(PermissionDenied, match="hugo may not model.export on job:j") as info:
        require(HEAD, Action.EXPORT_MODEL, Resource.job("j"))
    assert info.value.decision == decide(HEAD, Action.EXPORT_MODEL, Resource.job("j"))


@pytest.mark.parametrize(
    ("kwargs", "rule"),
    [
        ({"user_id": "", "role": Role.EMPLOYEE}, "user_id must be"),
        ({"user_id": "a b", "role": Role.EMPLOYEE}, "user_id must be"),
        ({"user_id": "x", "role": "boss"}, "role must be one of data_admin"),
        ({"user_id": "x", "role": Role.DEPARTMENT_HEAD}, "needs a department"),
        ({"user_id": "x", "role": Role.DATA_ADMIN, "department": "credit"}, "takes no department"),
        ({"user_id": "x", "role": Role.AUDITOR, "department": "credit"}, "takes no department"),
        ({"user_id": "x", "role": Role.EMPLOYEE, "department": " credit"}, "whitespace"),
    ],
)
def test_bad_users_are_refused(kwargs: dict[str, object], rule: str) -> None:
    with pytest.raises(StoreError, match=rule):
        User(**kwargs)  # type: ignore[arg-type]


def test_resources_validate_their_parts() -> None:
    with pytest.raises(StoreError, match="departments must be a set"):
        Resource("x", "credit")  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="department must not be empty"):
        Resource.node("n", "")
    with pytest.raises(StoreError, match="resource name must not be empty"):
        Resource("")
    assert Resource.job("j", ["a", "a", "b"]).departments == {"a", "b"}
    with pytest.raises(StoreError, match="user must be a User"):
        decide("ada", Action.VIEW_JOB, Resource.federation())  # type: ignore[arg-type]
    with pytest.raises(
        StoreError, match="action must be one of the Action values, got 'job.steal'"
    ):
        decide(ADMIN, "job.steal", Resource.federation())  # type: ignore[arg-type]


def test_decisions_are_written_to_the_audit_chain(db: Database) -> None:
    log = AuditLog(db)
    resource = Resource.node("r1", "risk")
    denied = decide(HEAD, Action.VIEW_NODE, resource)
    rec = audit_decision(log, HEAD, Action.VIEW_NODE, resource, denied, detail={"via": "chat"})
    assert (rec.actor, rec.role, rec.action, rec.resource) == (
        "hugo", "department_head", "node.view", "node:r1",
    )  # fmt: skip
    assert rec.departments == ("risk",) and rec.outcome == "denied"
    assert rec.detail == {"via": "chat", "reason": denied.reason}
    ok = decide(EMPLOYEE, Action.USE_MODEL_SERVICE, Resource.model_service("credit-risk"))
    rec2 = audit_decision(
        log, EMPLOYEE, Action.USE_MODEL_SERVICE, Resource.model_service("credit-risk"), ok
    )
    assert rec2.outcome == "allowed" and rec2.detail["job_id"] == "credit-risk"
    assert [r.seq for r in log.list(department="risk")] == [1]
    assert log.verify().ok


def test_decision_is_a_plain_record() -> None:
    assert Decision(True, "x") == Decision(True, "x")


def test_the_permissions_doc_is_the_rendering_of_the_policy() -> None:
    doc = Path(__file__).resolve().parents[2] / "docs" / "permissions.md"
    rendered = render_permissions_markdown()
    assert doc.read_text(encoding="utf-8") == rendered, (
        "docs/permissions.md is stale; regenerate it with "
        "python -c 'from clawfed.governance.policy import render_permissions_markdown as r; "
        'print(r(), end="")\' > docs/permissions.md'
    )
    for action in Action:
        assert f"| `{action.value}` |" in rendered
    assert "| `approval.grant` | approve a job's use of a department's data, naming the purpose " \
        "| — | own department | — | — |" in rendered  # fmt: skip
