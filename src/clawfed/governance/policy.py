"""Who may do what: roles, actions, resources and the one ``decide`` every entry point calls."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType

from clawfed.core.errors import SecurityError, StoreError
from clawfed.governance._common import require_text
from clawfed.governance.audit import AuditLog, AuditRecord

#: User ids: what people type in the CLI and what the audit chain names.
USER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")


class Role(StrEnum):
    """What a person is to the federation (DESIGN.md, "The people who use it")."""

    DATA_ADMIN = "data_admin"
    DEPARTMENT_HEAD = "department_head"
    EMPLOYEE = "employee"
    AUDITOR = "auditor"


class Action(StrEnum):
    """Everything the CLI, REST API, dashboard and chat do on someone's behalf.

    The values are the ``action`` names written to the audit chain.
    """

    VIEW_OVERVIEW = "federation.view"
    VIEW_NODE = "node.view"
    VIEW_DATASETS = "dataset.view"
    ENROLL_NODE = "node.enroll"
    REVOKE_NODE = "node.revoke"
    VIEW_JOB = "job.view"
    SUBMIT_JOB = "job.submit"
    CANCEL_JOB = "job.cancel"
    VIEW_APPROVALS = "approval.view"
    REQUEST_APPROVAL = "approval.request"
    APPROVE_JOB = "approval.grant"
    REVOKE_APPROVAL = "approval.revoke"
    VIEW_VERSIONS = "model.view"
    EXPORT_MODEL = "model.export"
    USE_MODEL_SERVICE = "model.predict"
    VIEW_CONTRIBUTIONS = "contribution.view"
    VIEW_REPORT = "report.view"
    VIEW_AUDIT = "audit.view"
    VERIFY_AUDIT = "audit.verify"
    VIEW_USER = "user.view"
    MANAGE_USERS = "user.manage"
    ASK_CHAT = "chat.ask"
    VIEW_CHAT_TRANSCRIPT = "chat.transcript"
    VIEW_METRICS = "metrics.view"


class Scope(StrEnum):
    """A condition under which a role may take an action on a resource."""

    ANY = "any"
    OWN_DEPARTMENT = "own department"
    ENTITLED = "entitled services"
    SELF = "themselves"
    GENERAL = "general"


#: What each action is, in a few words (for ``docs/permissions.md``).
DESCRIPTIONS: Mapping[Action, str] = MappingProxyType(
    {
        Action.VIEW_OVERVIEW: "see the federation overview (nodes, jobs, health)",
        Action.VIEW_NODE: "see a node's status, logs and metrics",
        Action.VIEW_DATASETS: "see the metadata of the datasets a node offers (never rows)",
        Action.ENROLL_NODE: "enroll a department's node (issue its certificate)",
        Action.REVOKE_NODE: "revoke a node's certificate",
        Action.VIEW_JOB: "see a job's status, rounds and metrics",
        Action.SUBMIT_JOB: "submit a training job (and request the approvals it needs)",
        Action.CANCEL_JOB: "cancel a job",
        Action.VIEW_APPROVALS: "see approval requests and decisions",
        Action.REQUEST_APPROVAL: "ask a department's head to let a job use its data",
        Action.APPROVE_JOB: "approve a job's use of a department's data, naming the purpose",
        Action.REVOKE_APPROVAL: "withdraw a department's approval (it leaves the next round)",
        Action.VIEW_VERSIONS: "see model versions, lineage and per-department metrics",
        Action.EXPORT_MODEL: "export a model version's weights",
        Action.USE_MODEL_SERVICE: "get predictions and results from a job's model service",
        Action.VIEW_CONTRIBUTIONS: "see departments' contributions to a model",
        Action.VIEW_REPORT: "see a department's reports",
        Action.VIEW_AUDIT: "read the audit log",
        Action.VERIFY_AUDIT: "verify the audit chain",
        Action.VIEW_USER: "see a user's profile, role and tokens",
        Action.MANAGE_USERS: "create users, change roles, issue or revoke tokens, link chat ids",
        Action.ASK_CHAT: "ask the chat bot a question about a resource",
        Action.VIEW_CHAT_TRANSCRIPT: "read a user's chat transcript",
        Action.VIEW_METRICS: "scrape the coordinator's Prometheus metrics (all departments)",
    }
)

_A, _O, _E, _S, _G = Scope.ANY, Scope.OWN_DEPARTMENT, Scope.ENTITLED, Scope.SELF, Scope.GENERAL
_ADMIN, _HEAD, _EMPLOYEE, _AUDITOR = list(Role)

#: The policy: per action and role, the scopes under which it is allowed (any one suffices).
#: A data admin may do everything except consent for a department: only its head can.
_RULES: dict[Action, dict[Role, tuple[Scope, ...]]] = {
    Action.VIEW_OVERVIEW: {_ADMIN: (_A,), _HEAD: (_O,)},
    Action.VIEW_NODE: {_ADMIN: (_A,), _HEAD: (_O,)},
    Action.VIEW_DATASETS: {_ADMIN: (_A,), _HEAD: (_O,)},
    Action.ENROLL_NODE: {_ADMIN: (_A,)},
    Action.REVOKE_NODE: {_ADMIN: (_A,)},
    Action.VIEW_JOB: {_ADMIN: (_A,), _HEAD: (_O,)},
    Action.SUBMIT_JOB: {_ADMIN: (_A,)},
    Action.CANCEL_JOB: {_ADMIN: (_A,)},
    Action.VIEW_APPROVALS: {_ADMIN: (_A,), _HEAD: (_O,), _AUDITOR: (_A,)},
    Action.REQUEST_APPROVAL: {_ADMIN: (_A,)},
    Action.APPROVE_JOB: {_HEAD: (_O,)},
    Action.REVOKE_APPROVAL: {_ADMIN: (_A,), _HEAD: (_O,)},
    Action.VIEW_VERSIONS: {_ADMIN: (_A,), _HEAD: (_O,)},
    Action.EXPORT_MODEL: {_ADMIN: (_A,)},
    Action.USE_MODEL_SERVICE: {_ADMIN: (_A,), _HEAD: (_E,), _EMPLOYEE: (_E,), _AUDITOR: (_E,)},
    Action.VIEW_CONTRIBUTIONS: {_ADMIN: (_A,), _HEAD: (_O,)},
    Action.VIEW_REPORT: {_ADMIN: (_A,), _HEAD: (_O,)},
    Action.VIEW_AUDIT: {_ADMIN: (_A,), _HEAD: (_O,), _AUDITOR: (_A,)},
    Action.VERIFY_AUDIT: {_ADMIN: (_A,), _AUDITOR: (_A,)},
    Action.VIEW_USER: {_ADMIN: (_A,), _HEAD: (_S,), _EMPLOYEE: (_S,), _AUDITOR: (_S,)},
    Action.MANAGE_USERS: {_ADMIN: (_A,)},
    Action.ASK_CHAT: {
        _ADMIN: (_A,),
        _HEAD: (_G, _O),
        _EMPLOYEE: (_G, _E),
        _AUDITOR: (_G,),
    },
    Action.VIEW_CHAT_TRANSCRIPT: {
        _ADMIN: (_A,),
        _HEAD: (_S,),
        _EMPLOYEE: (_S,),
        _AUDITOR: (_S,),
    },
    Action.VIEW_METRICS: {_ADMIN: (_A,)},
}
RULES: Mapping[Action, Mapping[Role, tuple[Scope, ...]]] = MappingProxyType(
    {a: MappingProxyType(by_role) for a, by_role in _RULES.items()}
)


def _a(role: Role) -> str:
    return f"an {role}" if role[0] in "aeiou" else f"a {role}"


def _name(value: object, what: str) -> str:
    return require_text(value, what, 128)


@dataclass(frozen=True)
class User:
    """A person as the policy sees them; ``entitlements`` are job ids of usable model services.

    A department head belongs to exactly one department; a data admin and an auditor
    to none (they see across departments); an employee optionally to one.
    """

    user_id: str
    role: Role
    department: str | None = None
    display_name: str = ""
    entitlements: frozenset[str] = frozenset()
    created_at: datetime | None = None
    disabled_at: datetime | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.user_id, str) or not USER_ID.fullmatch(self.user_id):
            raise StoreError(
                "user_id must be 1-64 letters, digits, '_', '.', '@' or '-' starting with a "
                f"letter or digit, got {self.user_id!r}"
            )
        role = role_of(self.role)
        object.__setattr__(self, "role", role)
        if self.department is not None:
            _name(self.department, f"user {self.user_id}: department")
        if role is Role.DEPARTMENT_HEAD and self.department is None:
            raise StoreError(f"user {self.user_id}: a department_head needs a department")
        if role in (Role.DATA_ADMIN, Role.AUDITOR) and self.department is not None:
            raise StoreError(
                f"user {self.user_id}: a {role} sees across departments and takes no "
                f"department, got {self.department!r}"
            )
        object.__setattr__(self, "entitlements", frozenset(self.entitlements))

    @property
    def disabled(self) -> bool:
        """Whether the user was disabled (every action is then refused)."""
        return self.disabled_at is not None


def role_of(value: object) -> Role:
    """``value`` as a ``Role``; anything else is a ``StoreError`` listing the roles."""
    if isinstance(value, str) and value in Role.__members__.values():
        return Role(value)
    raise StoreError(f"role must be one of {', '.join(Role)}, got {value!r}")


@dataclass(frozen=True)
class Resource:
    """What an action touches, as far as permissions go.

    ``departments`` are the departments whose data, nodes or metrics the action would
    reveal or use: a view filtered to one department names only that one. ``job_id`` names
    a model service; ``owner`` the user a profile or transcript belongs to. ``name`` is
    what the audit chain records (``"job:credit-risk"``).
    """

    name: str
    departments: frozenset[str] = field(default_factory=frozenset)
    job_id: str | None = None
    owner: str | None = None

    def __post_init__(self) -> None:
        require_text(self.name, "resource name", 512)
        if isinstance(self.departments, str):
            raise StoreError(f"departments must be a set of names, got {self.departments!r}")
        depts = frozenset(self.departments)
        for d in depts:
            _name(d, f"resource {self.name}: department")
        object.__setattr__(self, "departments", depts)
        if self.job_id is not None:
            _name(self.job_id, f"resource {self.name}: job_id")
        if self.owner is not None:
            _name(self.owner, f"resource {self.name}: owner")

    @property
    def general(self) -> bool:
        """Whether the resource is about no department, job or person in particular."""
        return not self.departments and self.job_id is None and self.owner is None

    @classmethod
    def federation(cls) -> Resource:
        """The federation as a whole (no department's data)."""
        return cls("federation")

    @classmethod
    def overview(cls, departments: Iterable[str]) -> Resource:
        """The overview of ``departments`` (all of them for the whole federation)."""
        return cls("federation", frozenset(departments))

    @classmethod
    def node(cls, node_id: str, department: str) -> Resource:
        """One node of ``department``."""
        return cls(f"node:{node_id}", frozenset({department}))

    @classmethod
    def job(cls, job_id: str, departments: Iterable[str] = ()) -> Resource:
        """A job, or the slice of it about ``departments`` (its versions, metrics…)."""
        return cls(f"job:{job_id}", frozenset(departments), job_id=job_id)

    @classmethod
    def model_service(cls, job_id: str) -> Resource:
        """The model service of a job: predictions and results, no department's data."""
        return cls(f"service:{job_id}", job_id=job_id)

    @classmethod
    def approval(cls, job_id: str, department: str) -> Resource:
        """The approval of ``department`` for ``job_id``."""
        return cls(f"approval:{job_id}/{department}", frozenset({department}), job_id=job_id)

    @classmethod
    def department(cls, department: str, what: str = "department") -> Resource:
        """Something about one department (its report, its audit entries…)."""
        return cls(f"{what}:{department}", frozenset({department}))

    @classmethod
    def audit(cls, departments: Iterable[str] = ()) -> Resource:
        """The audit log, or the entries touching ``departments``."""
        return cls("audit", frozenset(departments))

    @classmethod
    def user(cls, user_id: str) -> Resource:
        """A user's profile and tokens."""
        return cls(f"user:{user_id}", owner=user_id)

    @classmethod
    def transcript(cls, user_id: str) -> Resource:
        """A user's chat transcript."""
        return cls(f"transcript:{user_id}", owner=user_id)


@dataclass(frozen=True)
class Decision:
    """Whether an action is allowed, and why, in words fit for the person asking."""

    allowed: bool
    reason: str


class PermissionDenied(SecurityError):
    """A user asked for something the policy refuses; ``decision.reason`` says why."""

    def __init__(self, user: User, action: Action, resource: Resource, decision: Decision) -> None:
        super().__init__(f"{user.user_id} may not {action} on {resource.name}: {decision.reason}")
        self.user = user
        self.action = action
        self.resource = resource
        self.decision = decision


def _meets(user: User, scope: Scope, resource: Resource) -> bool:
    if scope is Scope.ANY:
        return True
    if scope is Scope.OWN_DEPARTMENT:
        return bool(resource.departments) and resource.departments <= {user.department}
    if scope is Scope.ENTITLED:
        return (
            resource.job_id in user.entitlements and not resource.departments and not resource.owner
        )
    if scope is Scope.SELF:
        return resource.owner == user.user_id and not resource.departments
    return resource.general


def _why_not(user: User, scopes: tuple[Scope, ...], resource: Resource) -> str:
    depts = ", ".join(sorted(resource.departments)) or "no department"
    if Scope.OWN_DEPARTMENT in scopes:
        if not resource.departments and Scope.GENERAL not in scopes:
            return (
                f"a department_head sees only their department ({user.department}), and this "
                "spans the whole federation; ask for the view of your department"
            )
        return f"a department_head sees only their department ({user.department}), not {depts}"
    if Scope.ENTITLED in scopes:
        if resource.departments:
            return f"{_a(user.role)} may not see departments' data ({depts})"
        what = f"the model service of job {resource.job_id}" if resource.job_id else "this"
        return f"{user.user_id} is not entitled to {what}; a data admin can grant it"
    if Scope.SELF in scopes:
        return f"{_a(user.role)} may see only their own profile and transcript"
    return f"{_a(user.role)} may ask only general questions"


def decide(user: User, action: Action, resource: Resource) -> Decision:
    """Decide whether ``user`` may take ``action`` on ``resource``.

    Parameters
    ----------
    user:
        Who asks; a disabled user is refused everything.
    action:
        What they want to do.
    resource:
        What it touches; see :class:`Resource` for how departments are counted.

    Returns
    -------
    Decision
        ``allowed`` and a ``reason`` that names the rule applied.
    """
    if not isinstance(user, User):
        raise StoreError(f"user must be a User, got {type(user).__name__}")
    if not isinstance(resource, Resource):
        raise StoreError(f"resource must be a Resource, got {type(resource).__name__}")
    if not isinstance(action, str) or action not in Action.__members__.values():
        raise StoreError(f"action must be one of the Action values, got {action!r}")
    act = Action(action)
    if user.disabled:
        return Decision(False, f"user {user.user_id} is disabled")
    scopes = RULES[act].get(user.role, ())
    if not scopes:
        if act is Action.APPROVE_JOB and user.role is Role.DATA_ADMIN:
            return Decision(
                False, "only the department's head can approve the use of its data, not an admin"
            )
        return Decision(False, f"{_a(user.role)} may not {DESCRIPTIONS[act]}")
    for scope in scopes:
        if _meets(user, scope, resource):
            return Decision(True, f"{_a(user.role)} may {DESCRIPTIONS[act]} ({scope})")
    return Decision(False, _why_not(user, scopes, resource))


def require(user: User, action: Action, resource: Resource) -> Decision:
    """Like :func:`decide`, but raise :class:`PermissionDenied` when refused."""
    decision = decide(user, action, resource)
    if not decision.allowed:
        raise PermissionDenied(user, Action(action), resource, decision)
    return decision


def audit_decision(
    audit_log: AuditLog,
    user: User,
    action: Action,
    resource: Resource,
    decision: Decision,
    *,
    detail: Mapping[str, str | int | float | bool | None] | None = None,
) -> AuditRecord:
    """Write ``decision`` to the audit chain (outcome ``allowed`` or ``denied``)."""
    body: dict[str, str | int | float | bool | None] = dict(detail or {})
    body["reason"] = decision.reason
    if resource.job_id is not None:
        body.setdefault("job_id", resource.job_id)
    if resource.owner is not None:
        body.setdefault("owner", resource.owner)
    return audit_log.append(
        actor=user.user_id,
        role=user.role.value,
        action=Action(action).value,
        resource=resource.name,
        departments=sorted(resource.departments),
        detail=body,
        outcome="allowed" if decision.allowed else "denied",
    )


def render_permissions_markdown() -> str:
    """The table of every action and role in ``docs/permissions.md``, made from ``RULES``."""
    roles = list(Role)
    lines = [
        "# Permissions",
        "",
        "<!-- Generated by clawfed.governance.policy.render_permissions_markdown; do not edit. -->",
        "",
        "Who may do what. Every request, whether from the CLI, the REST API, the dashboard or",
        "the chat, is decided by `clawfed.governance.policy.decide` and the decision is",
        "written to the audit chain.",
        "",
        "A resource counts the departments whose data, nodes or metrics an action would reveal",
        "or use: a view filtered to one department names only that department.",
        "",
        "| scope | allowed when |",
        "| --- | --- |",
        "| any | always |",
        "| own department | the resource names departments and all are the user's own |",
        "| entitled services | the resource is a model service the user is entitled to, "
        "and names no department |",
        "| themselves | the resource is the user's own profile or transcript |",
        "| general | the resource names no department, job or person |",
        "| — | never |",
        "",
        "| role | who |",
        "| --- | --- |",
        "| data_admin | runs the federation; sees everything |",
        "| department_head | belongs to one department; watches and approves for it |",
        "| employee | may belong to a department; uses the model services granted to them |",
        "| auditor | checks who did what, with whose data, in the audit log |",
        "",
        "A disabled user may do nothing. A data admin may do everything except approve the",
        "use of a department's data: only that department's head can give that consent (an",
        "admin may still revoke an approval, which only stops the use of data).",
        "",
        "The REST API (`/api/v1/...`) and the dashboard ask the same policy: every endpoint",
        "and every page names the action it needs, and a view a role may only partly see",
        "(a department head's overview) is filtered to the departments the policy allows.",
        "",
        "In chat, `chat.ask` decides whether the bot takes up a question about a resource at",
        "all; the answer then needs the action it reveals (`job.view`, `model.predict`, …).",
        "",
        "| action | what it is | " + " | ".join(r.value for r in roles) + " |",
        "| --- | --- | " + " | ".join("---" for _ in roles) + " |",
    ]
    for action in Action:
        cells = [", ".join(s.value for s in RULES[action].get(r, ())) or "—" for r in roles]
        lines.append(f"| `{action.value}` | {DESCRIPTIONS[action]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
