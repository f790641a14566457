"""Who is asking in chat, and whether they may: roles from the store, config or WeCom, audited."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from clawfed.chat.errors import ChatError
from clawfed.chat.service.config import AccessSettings
from clawfed.core.errors import ClawfedError, NotFoundError, SecurityError
from clawfed.governance.audit import AuditLog
from clawfed.governance.db import Database
from clawfed.governance.policy import Action, Decision, Resource, Role, User, decide
from clawfed.governance.users import UserDirectory

_log = logging.getLogger(__name__)
MAX_QUESTION_CHARS = 500

#: Fetches a WeCom user's profile (``user/get``); None when WeCom does not know them.
ProfileLookup = Callable[[str], Mapping[str, Any] | None]


@dataclass(frozen=True)
class Asker:
    """A chat sender: their WeCom id and who they are to clawfed (None: nobody known)."""

    wecom_id: str
    user: User | None
    source: str  # "store", "config", "wecom" or "unknown"


def wecom_profile_lookup(client: Any) -> ProfileLookup:
    """A :data:`ProfileLookup` over a ``WeComClient`` (``user/get``; 60111 means unknown)."""

    def lookup(userid: str) -> Mapping[str, Any] | None:
        try:
            data: Mapping[str, Any] = client.get_json("user/get", {"userid": userid})
        except ChatError as exc:
            if "60111" in str(exc):
                return None
            raise
        return data

    return lookup


def _user_from_profile(
    wecom_id: str, profile: Mapping[str, Any], settings: AccessSettings
) -> User | None:
    ids = profile.get("department") or []
    leader = profile.get("is_leader_in_dept") or []
    if not isinstance(ids, list):
        return None
    for i, dept_id in enumerate(ids):
        name = settings.wecom_departments.get(int(dept_id)) if isinstance(dept_id, int) else None
        if name is None:
            continue
        heads = isinstance(leader, list) and i < len(leader) and leader[i] == 1
        role = Role.DEPARTMENT_HEAD if heads else Role.EMPLOYEE
        return User(wecom_id, role, name, entitlements=frozenset(settings.entitlements))
    return User(wecom_id, Role.EMPLOYEE, None, entitlements=frozenset(settings.entitlements))


class AccessControl:
    """Finds who a WeCom sender is, decides with ``governance.policy`` and audits every call.

    Parameters
    ----------
    settings
        The ``chat.access`` section.
    db
        The coordinator's database (users, audit chain).
    lookup
        WeCom ``user/get`` for senders neither in the store nor in ``settings.people``.
    """

    def __init__(
        self, settings: AccessSettings, db: Database, *, lookup: ProfileLookup | None = None
    ) -> None:
        self._settings = settings
        self._audit = AuditLog(db)
        self._users = UserDirectory(db)
        self._lookup = lookup if settings.lookup else None
        self._cache: dict[str, Asker] = {}
        self._lock = threading.Lock()

    def who(self, wecom_id: str) -> Asker:
        """The sender ``wecom_id`` as clawfed knows them (cached for WeCom lookups)."""
        try:
            return Asker(wecom_id, self._users.user_by_wecom(wecom_id), "store")
        except NotFoundError:
            pass
        except SecurityError:
            return Asker(wecom_id, None, "unknown")  # linked but disabled
        except ClawfedError as exc:  # a malformed id
            _log.info("chat: sender %r not looked up: %s", wecom_id, exc)
            return Asker(wecom_id, None, "unknown")
        person = self._settings.people.get(wecom_id)
        if person is not None:
            user = User(
                wecom_id,
                person.role,
                person.department,
                entitlements=frozenset(person.entitlements),
            )
            return Asker(wecom_id, user, "config")
        if self._lookup is None:
            return Asker(wecom_id, None, "unknown")
        with self._lock:
            cached = self._cache.get(wecom_id)
        if cached is not None:
            return cached
        try:
            profile = self._lookup(wecom_id)
        except ClawfedError as exc:
            _log.warning("chat: WeCom user/get for %s failed: %s", wecom_id, exc)
            return Asker(wecom_id, None, "unknown")
        found = None if profile is None else _user_from_profile(wecom_id, profile, self._settings)
        asker = Asker(wecom_id, found, "wecom" if found else "unknown")
        with self._lock:
            self._cache[wecom_id] = asker
        return asker

    def decide(self, asker: Asker, action: Action, resource: Resource, question: str) -> Decision:
        """Decide with the policy and write the decision (with the question) to the audit chain."""
        if asker.user is None:
            decision = Decision(
                False,
                f"WeCom user {asker.wecom_id} is not registered with clawfed; ask a data admin",
            )
            self._write(asker, "unknown", action, resource, decision, question)
            return decision
        decision = decide(asker.user, action, resource)
        self._write(asker, asker.user.role.value, action, resource, decision, question)
        return decision

    def record(
        self, asker: Asker, action: Action, resource: Resource, question: str, reason: str
    ) -> None:
        """Audit an allowed command whose decision was made elsewhere (e.g. an approval)."""
        role = asker.user.role.value if asker.user else "unknown"
        self._write(asker, role, action, resource, Decision(True, reason), question)

    def _write(
        self,
        asker: Asker,
        role: str,
        action: Action,
        resource: Resource,
        decision: Decision,
        question: str,
    ) -> None:
        detail: dict[str, str | int | float | bool | None] = {
            "question": question[:MAX_QUESTION_CHARS],
            "channel": "wecom",
            "wecom_userid": asker.wecom_id,
            "identity": asker.source,
            "reason": decision.reason,
        }
        if resource.job_id is not None:
            detail["job_id"] = resource.job_id
        self._audit.append(  # a failed audit write fails the answer: nothing goes unrecorded
            actor=asker.user.user_id if asker.user else f"wecom:{asker.wecom_id}",
            role=role,
            action=Action(action).value,
            resource=resource.name,
            departments=sorted(resource.departments),
            detail=detail,
            outcome="allowed" if decision.allowed else "denied",
        )
