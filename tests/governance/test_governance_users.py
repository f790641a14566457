"""UserDirectory: users and roles, API tokens, WeCom identities, entitlements."""

from __future__ import annotations

import base64
import hashlib
from datetime import timedelta

import pytest
from governance_support import StepClock
from sqlalchemy import select, text

from clawfed.core.errors import NotFoundError, StoreError
from clawfed.governance import AuditLog, Database, JobStore
from clawfed.governance import users as users_module
from clawfed.governance.policy import Action, PermissionDenied, Resource, Role, User, decide
from clawfed.governance.rbac_tables import ApiTokenRow
from clawfed.governance.users import (
    MAX_TOKEN_LIFETIME,
    AuthenticationError,
    AuthFailure,
    UserDirectory,
)


@pytest.fixture
def audit(db: Database) -> AuditLog:
    return AuditLog(db)


@pytest.fixture
def people(db: Database, audit: AuditLog, clock: StepClock) -> UserDirectory:
    return UserDirectory(db, audit=audit, clock=clock)


@pytest.fixture
def admin(people: UserDirectory) -> User:
    return people.create("ada", Role.DATA_ADMIN, display_name="Ada 管理员")


def test_create_get_and_list(people: UserDirectory, admin: User) -> None:
    head = people.create("hugo", Role.DEPARTMENT_HEAD, department="信贷部", by=admin)
    emp = people.create("emma", Role.EMPLOYEE, by=admin)
    assert people.get("hugo") == head
    assert (head.role, head.department, head.entitlements) == (
        Role.DEPARTMENT_HEAD, "信贷部", frozenset(),
    )  # fmt: skip
    assert admin.display_name == "Ada 管理员" and admin.created_at is not None
    assert [u.user_id for u in people.list()] == ["ada", "emma", "hugo"]
    assert people.list(role=Role.EMPLOYEE) == [emp]
    assert people.list(department="信贷部") == [head]
    with pytest.raises(StoreError, match="user 'hugo' already exists"):
        people.create("hugo", Role.EMPLOYEE)
    with pytest.raises(NotFoundError, match="user 'nobody' does not exist"):
        people.get("nobody")


@pytest.mark.parametrize(
    ("args", "kwargs", "rule"),
    [
        (("a b", Role.EMPLOYEE), {}, "user_id must be"),
        (("x", "boss"), {}, "role must be one of"),
        (("x", Role.DEPARTMENT_HEAD), {}, "needs a department"),
        (("x", Role.DATA_ADMIN), {"department": "credit"}, "takes no department"),
        (("x", Role.EMPLOYEE), {"display_name": "x" * 129}, "at most 128"),
    ],
)
def test_bad_users_are_refused(
    people: UserDirectory, args: tuple[object, ...], kwargs: dict[str, object], rule: str
) -> None:
    with pytest.raises(StoreError, match=rule):
        people.create(*args, **kwargs)  # type: ignore[arg-type]
    assert people.list() == []


def test_change_role_and_disable(people: UserDirectory, admin: User) -> None:
    people.create("hugo", Role.EMPLOYEE, by=admin)
    head = people.change_role("hugo", Role.DEPARTMENT_HEAD, department="credit", by=admin)
    assert (head.role, head.department) == (Role.DEPARTMENT_HEAD, "credit")
    with pytest.raises(StoreError, match="needs a department"):
        people.change_role("hugo", Role.DEPARTMENT_HEAD, by=admin)
    gone = people.disable("hugo", "left the company", by=admin)
    assert (
        gone.disabled and not decide(gone, Action.VIEW_NODE, Resource.node("n", "credit")).allowed
    )
    with pytest.raises(StoreError, match="already disabled"):
        people.disable("hugo", "again")
    assert not people.enable("hugo", by=admin).disabled
    with pytest.raises(StoreError, match="already enabled"):
        people.enable("hugo")


def test_only_a_data_admin_manages_users_and_refusals_are_audited(
    people: UserDirectory, admin: User, audit: AuditLog
) -> None:
    head = people.create("hugo", Role.DEPARTMENT_HEAD, department="credit", by=admin)
    with pytest.raises(PermissionDenied, match="hugo may not user.manage on user:mallory"):
        people.create("mallory", Role.DATA_ADMIN, by=head)
    with pytest.raises(PermissionDenied):
        people.issue_token("hugo", label="self-service", by=head)
    with pytest.raises(NotFoundError):
        people.get("mallory")
    assert people.tokens("hugo") == []
    entries = audit.list()
    assert [(e.actor, e.action, e.resource, e.outcome, e.detail["change"]) for e in entries] == [
        ("system", "user.manage", "user:ada", "allowed", "create"),
        ("ada", "user.manage", "user:hugo", "allowed", "create"),
        ("hugo", "user.manage", "user:mallory", "denied", "create"),
        ("hugo", "user.manage", "user:hugo", "denied", "issue_token"),
    ]
    assert audit.verify().ok


def test_tokens_authenticate_their_user(people: UserDirectory, admin: User, db: Database) -> None:
    people.create("emma", Role.EMPLOYEE, by=admin)
    issued = people.issue_token("emma", label="laptop", by=admin)
    assert issued.token.startswith(f"cfd_{issued.info.token_id}_")
    assert issued.token not in repr(issued)
    assert people.authenticate(issued.token) == people.get("emma")
    assert people.tokens("emma") == [issued.info]
    # Only the SHA-256 of the secret is stored; the token itself appears nowhere.
    secret = issued.token[len(f"cfd_{issued.info.token_id}_") :]
    with db.session() as s:
        row = s.get_one(ApiTokenRow, issued.info.token_id)
        assert row.secret_sha256 == hashlib.sha256(secret.encode()).hexdigest()
        dump = " ".join(str(v) for r in s.execute(text("SELECT * FROM api_tokens")) for v in r)
    assert secret not in dump and issued.token not in dump


def test_each_token_is_new_and_long(people: UserDirectory, admin: User) -> None:
    issued = [people.issue_token(admin.user_id, label=f"t{i}") for i in range(5)]
    assert len({i.token for i in issued}) == len({i.info.token_id for i in issued}) == 5
    for i in issued:
        secret = base64.urlsafe_b64decode(i.token[len(i.info.public_id) + 1 :] + "=")
        assert len(secret) == 32  # 256 random bits


@pytest.mark.parametrize(
    "bad",
    ["", "cfd", "Bearer x", "cfd_0123456789abcdef_short", "cfd_XYZ_" + "a" * 43, 42, None],
)
def test_malformed_tokens_are_refused(people: UserDirectory, bad: object) -> None:
    with pytest.raises(AuthenticationError) as info:
        people.authenticate(bad)  # type: ignore[arg-type]
    assert info.value.reason is AuthFailure.MALFORMED


def test_wrong_secret_and_unknown_id_are_refused_in_constant_time(
    people: UserDirectory, admin: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    issued = people.issue_token(admin.user_id, label="x")
    prefix = f"cfd_{issued.info.token_id}_"
    secret = issued.token[len(prefix) :]
    flipped = prefix + ("A" if secret[0] != "A" else "B") + secret[1:]
    unknown = "cfd_" + "0" * 16 + "_" + secret
    compared: list[tuple[str, str]] = []
    real = users_module.hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(users_module.hmac, "compare_digest", spy)
    for token in (flipped, unknown):
        with pytest.raises(AuthenticationError) as info:
            people.authenticate(token)
        assert info.value.reason is AuthFailure.UNKNOWN
        assert secret not in str(info.value) and token not in str(info.value)
    assert len(compared) == 2  # the unknown id was compared against a dummy hash too
    assert people.authenticate(issued.token).user_id == "ada"


def test_expired_and_revoked_tokens_are_refused(
    people: UserDirectory, admin: User, clock: StepClock
) -> None:
    short = people.issue_token("ada", label="short", expires_in=timedelta(seconds=30))
    assert people.authenticate(short.token).user_id == "ada"
    clock.now += timedelta(seconds=31)
    with pytest.raises(AuthenticationError, match="expired at") as info:
        people.authenticate(short.token)
    assert info.value.reason is AuthFailure.EXPIRED
    long = people.issue_token("ada", label="long")
    revoked = people.revoke_token(long.info.public_id, "laptop lost", by=admin)
    assert revoked.revoked_at is not None and revoked.revoke_reason == "laptop lost"
    assert not revoked.active(clock.now) and not people.tokens("ada")[0].active(clock.now)
    with pytest.raises(AuthenticationError, match="was revoked") as info:
        people.authenticate(long.token)
    assert info.value.reason is AuthFailure.REVOKED
    with pytest.raises(StoreError, match="already revoked"):
        people.revoke_token(long.info.token_id, "again")
    with pytest.raises(NotFoundError, match="does not exist"):
        people.revoke_token("cfd_ffffffffffffffff", "x")


@pytest.mark.parametrize(
    "expires_in", [timedelta(0), timedelta(seconds=-1), MAX_TOKEN_LIFETIME + timedelta(1), 90]
)
def test_token_lifetime_is_bounded(
    people: UserDirectory, admin: User, expires_in: timedelta
) -> None:
    with pytest.raises(StoreError, match="expires_in must be a timedelta"):
        people.issue_token(admin.user_id, label="x", expires_in=expires_in)


def test_a_disabled_users_tokens_and_chat_id_stop_working(
    people: UserDirectory, admin: User
) -> None:
    people.create("emma", Role.EMPLOYEE, by=admin)
    issued = people.issue_token("emma", label="x", by=admin)
    people.link_wecom("emma", "ZhangSan", by=admin)
    people.disable("emma", "on leave", by=admin)
    for attempt in (
        lambda: people.authenticate(issued.token),
        lambda: people.user_by_wecom("zhangsan"),
    ):
        with pytest.raises(AuthenticationError, match="disabled") as info:
            attempt()
        assert info.value.reason is AuthFailure.USER_DISABLED
    with pytest.raises(StoreError, match="is disabled; enable them"):
        people.issue_token("emma", label="y")
    people.enable("emma", by=admin)
    assert people.authenticate(issued.token).user_id == "emma"


def test_wecom_ids_map_to_users(people: UserDirectory, admin: User, audit: AuditLog) -> None:
    people.create("emma", Role.EMPLOYEE, department="credit", by=admin)
    people.link_wecom("emma", "ZhangSan", by=admin)
    assert people.user_by_wecom("zhangsan").user_id == "emma"
    assert people.user_by_wecom("ZHANGSAN").user_id == "emma"  # WeCom ignores case
    with pytest.raises(StoreError, match="already linked to 'emma'"):
        people.link_wecom("ada", "zhangsan")
    with pytest.raises(StoreError, match="already linked to WeCom userid 'zhangsan'"):
        people.link_wecom("emma", "lisi")
    with pytest.raises(NotFoundError, match="not linked to a clawfed user"):
        people.user_by_wecom("lisi")
    with pytest.raises(StoreError, match="WeCom userid must be"):
        people.link_wecom("emma", "张三")
    people.unlink_wecom("ZhangSan", by=admin)
    with pytest.raises(NotFoundError):
        people.user_by_wecom("zhangsan")
    with pytest.raises(NotFoundError, match="not linked to any user"):
        people.unlink_wecom("zhangsan")
    people.link_wecom("emma", "lisi")
    assert people.user_by_wecom("lisi").user_id == "emma"
    changes = [e.detail["change"] for e in audit.list() if e.resource == "user:emma"]
    assert changes == ["create", "link_wecom", "unlink_wecom", "link_wecom"]


def test_entitlements_reach_the_policy(people: UserDirectory, admin: User, db: Database) -> None:
    JobStore(db).create("credit-risk", "credit-risk", "", 3)
    people.create("emma", Role.EMPLOYEE, by=admin)
    service = Resource.model_service("credit-risk")
    assert not decide(people.get("emma"), Action.USE_MODEL_SERVICE, service).allowed
    emma = people.entitle("emma", "credit-risk", by=admin)
    assert emma.entitlements == {"credit-risk"}
    assert people.entitle("emma", "credit-risk").entitlements == {"credit-risk"}  # idempotent
    assert decide(people.get("emma"), Action.USE_MODEL_SERVICE, service).allowed
    assert people.disentitle("emma", "credit-risk", by=admin).entitlements == frozenset()
    with pytest.raises(NotFoundError, match="not entitled"):
        people.disentitle("emma", "credit-risk")
    with pytest.raises(NotFoundError, match="job 'churn' does not exist"):
        people.entitle("emma", "churn")


def test_nothing_is_audited_without_an_audit_log(db: Database) -> None:
    people = UserDirectory(db)
    people.create("ada", Role.DATA_ADMIN)
    assert AuditLog(db).list() == []
    with db.session() as s:
        assert s.scalar(select(ApiTokenRow.token_id)) is None
