"""``UserDirectory``: people, their roles, API tokens, WeCom identities and entitlements."""

from __future__ import annotations

import builtins
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from clawfed.core.errors import NotFoundError, SecurityError, StoreError
from clawfed.governance._common import now_utc, require_text, utc
from clawfed.governance.audit import AuditLog
from clawfed.governance.db import Database
from clawfed.governance.policy import (
    Action,
    PermissionDenied,
    Resource,
    Role,
    User,
    audit_decision,
    decide,
    role_of,
)
from clawfed.governance.rbac_tables import ApiTokenRow, ChatIdentityRow, EntitlementRow, UserRow
from clawfed.governance.tables import JobRow

# API tokens are ``cfd_<id>_<secret>``: a public 64-bit id that finds the row, and a 256-bit
# secret shown once, of which only SHA-256 is stored. Slow hashes (scrypt, Argon2) slow down
# guessing *low-entropy* passwords; 2**256 random secrets cannot be guessed at any hash
# speed, so SHA-256 loses nothing and keeps each request cheap (a slow hash would let a
# stream of bad tokens burn the server's CPU; a keyed hash would add a key to manage).
TOKEN_PREFIX = "cfd"
#: Longest lifetime of an API token; tokens always expire.
MAX_TOKEN_LIFETIME = timedelta(days=730)
WECOM = "wecom"
_TOKEN = re.compile(r"cfd_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")
_WECOM_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
_DUMMY_HASH = hashlib.sha256(b"no such token").hexdigest()


class AuthFailure(StrEnum):
    """Why an API token was not accepted."""

    MALFORMED = "malformed"
    UNKNOWN = "unknown"
    EXPIRED = "expired"
    REVOKED = "revoked"
    USER_DISABLED = "user_disabled"


class AuthenticationError(SecurityError):
    """An API token was refused; ``reason`` says why. The message never holds the secret."""

    def __init__(self, reason: AuthFailure, detail: str) -> None:
        super().__init__(f"authentication failed ({reason}): {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class TokenInfo:
    """An API token as stored (without its secret); ``public_id`` is safe to show."""

    token_id: str
    user_id: str
    label: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    revoke_reason: str | None

    @property
    def public_id(self) -> str:
        """``cfd_<id>``: names the token in lists and logs without revealing it."""
        return f"{TOKEN_PREFIX}_{self.token_id}"

    def active(self, at: datetime) -> bool:
        """Whether the token is neither revoked nor expired at ``at``."""
        return self.revoked_at is None and at < self.expires_at


@dataclass(frozen=True)
class IssuedToken:
    """A new token: ``token`` is shown to its owner once and never stored."""

    token: str = field(repr=False)
    info: TokenInfo


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def normalize_wecom_userid(userid: object) -> str:
    """A WeCom userid in lower case (WeCom ignores case); malformed ones are refused."""
    if not isinstance(userid, str) or not _WECOM_ID.fullmatch(userid):
        raise StoreError(
            "WeCom userid must be 1-64 letters, digits, '_', '-', '.' or '@' starting with a "
            f"letter or digit, got {userid!r}"
        )
    return userid.lower()


class UserDirectory:
    """Users and how they prove who they are.

    Changes made with ``by=`` a user are checked against ``user.manage`` and written to
    the audit chain (when an ``audit`` log is given); ``by=None`` is the system itself
    (set-up commands on the coordinator's machine).
    """

    def __init__(
        self,
        db: Database,
        *,
        audit: AuditLog | None = None,
        clock: Callable[[], datetime] = now_utc,
    ) -> None:
        self._db = db
        self._audit = audit
        self._clock = clock

    def _now(self) -> datetime:
        return utc(self._clock(), "clock time")

    def _check(self, by: User | None, target: str, change: str) -> None:
        """Refuse (and audit the refusal) unless ``by`` may manage ``target``."""
        if by is None:
            return
        resource = Resource.user(target)
        decision = decide(by, Action.MANAGE_USERS, resource)
        if not decision.allowed:
            if self._audit is not None:
                audit_decision(self._audit, by, Action.MANAGE_USERS, resource, decision,
                               detail={"change": change})  # fmt: skip
            raise PermissionDenied(by, Action.MANAGE_USERS, resource, decision)

    def _done(self, by: User | None, target: str, change: str, **detail: str | None) -> None:
        """Write a change that was made to the audit chain."""
        if self._audit is None:
            return
        body: dict[str, str | None] = {"change": change, **detail}
        if by is None:
            self._audit.append("system", "system", Action.MANAGE_USERS.value, f"user:{target}",
                               [], body, "allowed")  # fmt: skip
            return
        resource = Resource.user(target)
        decision = decide(by, Action.MANAGE_USERS, resource)
        audit_decision(self._audit, by, Action.MANAGE_USERS, resource, decision, detail=body)

    def create(
        self,
        user_id: str,
        role: Role,
        *,
        department: str | None = None,
        display_name: str = "",
        by: User | None = None,
    ) -> User:
        """Add a user; ``user_id`` must be unused."""
        probe = User(user_id, role_of(role), department, display_name)
        if display_name:
            require_text(display_name, "display_name", 128)
        self._check(by, user_id, "create")
        with self._db.session() as s:
            if s.get(UserRow, user_id) is not None:
                raise StoreError(f"user {user_id!r} already exists")
            row = UserRow(
                user_id=user_id, display_name=display_name, role=probe.role.value,
                department=department, created_at=self._now(),
            )  # fmt: skip
            s.add(row)
            s.flush()
            user = _user(s, row)
        self._done(by, user_id, "create", role=user.role.value, department=department)
        return user

    def get(self, user_id: str) -> User:
        """The user ``user_id``; ``NotFoundError`` if there is none."""
        with self._db.session() as s:
            return _user(s, _require_user(s, user_id))

    def list(
        self, *, role: Role | None = None, department: str | None = None
    ) -> builtins.list[User]:
        """Every user (with ``role`` / in ``department`` if given), by ``user_id``."""
        stmt = select(UserRow).order_by(UserRow.user_id)
        if role is not None:
            stmt = stmt.where(UserRow.role == role_of(role).value)
        if department is not None:
            stmt = stmt.where(UserRow.department == department)
        with self._db.session() as s:
            return [_user(s, r) for r in s.scalars(stmt)]

    def change_role(
        self, user_id: str, role: Role, *, department: str | None = None, by: User | None = None
    ) -> User:
        """Give ``user_id`` a new role (and department, as the role requires)."""
        probe = User(user_id, role_of(role), department)
        self._check(by, user_id, "change_role")
        with self._db.session() as s:
            row = _require_user(s, user_id)
            row.role, row.department = probe.role.value, department
            s.flush()
            user = _user(s, row)
        self._done(by, user_id, "change_role", role=user.role.value, department=department)
        return user

    def disable(self, user_id: str, reason: str, *, by: User | None = None) -> User:
        """Disable ``user_id``: their tokens and chat identity stop working at once."""
        require_text(reason, "reason", 2000)
        return self._set_disabled(user_id, reason, by)

    def enable(self, user_id: str, *, by: User | None = None) -> User:
        """Undo :meth:`disable` (revoked tokens stay revoked)."""
        return self._set_disabled(user_id, None, by)

    def _set_disabled(self, user_id: str, reason: str | None, by: User | None) -> User:
        change = "enable" if reason is None else "disable"
        self._check(by, user_id, change)
        with self._db.session() as s:
            row = _require_user(s, user_id)
            if (row.disabled_at is not None) == (reason is not None):
                state = "disabled" if reason is not None else "enabled"
                raise StoreError(f"user {user_id!r} is already {state}")
            row.disabled_at = None if reason is None else self._now()
            row.disabled_reason = reason
            s.flush()
            user = _user(s, row)
        self._done(by, user_id, change, reason=reason)
        return user

    def issue_token(
        self,
        user_id: str,
        *,
        label: str,
        expires_in: timedelta = timedelta(days=90),
        by: User | None = None,
    ) -> IssuedToken:
        """Make a new API token for ``user_id``, valid for ``expires_in``; shown only here."""
        require_text(label, "token label", 128)
        if not isinstance(expires_in, timedelta) or not (
            timedelta(0) < expires_in <= MAX_TOKEN_LIFETIME
        ):
            raise StoreError(
                f"expires_in must be a timedelta in (0, {MAX_TOKEN_LIFETIME.days} days], "
                f"got {expires_in!r}"
            )
        self._check(by, user_id, "issue_token")
        now = self._now()
        with self._db.session() as s:
            if _require_user(s, user_id).disabled_at is not None:
                raise StoreError(f"user {user_id!r} is disabled; enable them before issuing tokens")
            token_id = secrets.token_hex(8)
            while s.get(ApiTokenRow, token_id) is not None:  # pragma: no cover - 2**-64
                token_id = secrets.token_hex(8)
            secret = secrets.token_urlsafe(32)
            row = ApiTokenRow(
                token_id=token_id, user_id=user_id, secret_sha256=_hash(secret), label=label,
                created_at=now, expires_at=now + expires_in,
            )  # fmt: skip
            s.add(row)
            s.flush()
            issued = IssuedToken(f"{TOKEN_PREFIX}_{token_id}_{secret}", _token(row))
        self._done(by, user_id, "issue_token", token=issued.info.public_id, label=label)
        return issued

    def tokens(self, user_id: str) -> builtins.list[TokenInfo]:
        """Every token of ``user_id`` (revoked and expired ones too), oldest first."""
        with self._db.session() as s:
            _require_user(s, user_id)
            stmt = (
                select(ApiTokenRow)
                .where(ApiTokenRow.user_id == user_id)
                .order_by(ApiTokenRow.created_at, ApiTokenRow.token_id)
            )
            return [_token(r) for r in s.scalars(stmt)]

    def revoke_token(self, token_id: str, reason: str, *, by: User | None = None) -> TokenInfo:
        """Revoke a token by its id (``cfd_<id>`` or ``<id>``); it is refused from now on."""
        require_text(reason, "reason", 2000)
        tid = token_id.removeprefix(f"{TOKEN_PREFIX}_") if isinstance(token_id, str) else ""
        with self._db.session() as s:
            owner = s.scalar(select(ApiTokenRow.user_id).where(ApiTokenRow.token_id == tid))
        if owner is None:
            raise NotFoundError(f"API token {token_id!r} does not exist")
        self._check(by, owner, "revoke_token")
        with self._db.session() as s:
            row = s.get_one(ApiTokenRow, tid)
            if row.revoked_at is not None:
                raise StoreError(f"API token {TOKEN_PREFIX}_{tid} is already revoked")
            row.revoked_at, row.revoke_reason = self._now(), reason
            s.flush()
            info = _token(row)
        self._done(by, owner, "revoke_token", token=info.public_id, reason=reason)
        return info

    def authenticate(self, token: str) -> User:
        """The user an API token belongs to; :class:`AuthenticationError` if it is refused.

        The secret is compared in constant time (``hmac.compare_digest``), also when the
        token id is unknown, so the time taken says nothing about the secret.
        """
        match = _TOKEN.fullmatch(token) if isinstance(token, str) else None
        if match is None:
            raise AuthenticationError(
                AuthFailure.MALFORMED, f"an API token looks like {TOKEN_PREFIX}_<16 hex>_<43 chars>"
            )
        token_id, secret = match.groups()
        public = f"{TOKEN_PREFIX}_{token_id}"
        now = self._now()
        with self._db.session() as s:
            row = s.get(ApiTokenRow, token_id)
            good = hmac.compare_digest(_hash(secret), row.secret_sha256 if row else _DUMMY_HASH)
            if row is None or not good:
                raise AuthenticationError(AuthFailure.UNKNOWN, f"API token {public} is not valid")
            if row.revoked_at is not None:
                raise AuthenticationError(
                    AuthFailure.REVOKED,
                    f"API token {public} was revoked at {row.revoked_at.isoformat()}",
                )
            if now >= row.expires_at:
                raise AuthenticationError(
                    AuthFailure.EXPIRED,
                    f"API token {public} expired at {row.expires_at.isoformat()}; get a new one",
                )
            return _active(s, _require_user(s, row.user_id))

    def link_wecom(self, user_id: str, wecom_userid: str, *, by: User | None = None) -> None:
        """Let the WeCom account ``wecom_userid`` speak for ``user_id`` (one account each)."""
        wid = normalize_wecom_userid(wecom_userid)
        self._check(by, user_id, "link_wecom")
        with self._db.session() as s:
            _require_user(s, user_id)
            taken = s.get(ChatIdentityRow, (WECOM, wid))
            if taken is not None:
                raise StoreError(f"WeCom userid {wid!r} is already linked to {taken.user_id!r}")
            mine = s.scalar(
                select(ChatIdentityRow.external_id).where(
                    ChatIdentityRow.channel == WECOM, ChatIdentityRow.user_id == user_id
                )
            )
            if mine is not None:
                raise StoreError(
                    f"user {user_id!r} is already linked to WeCom userid {mine!r}; unlink it first"
                )
            s.add(ChatIdentityRow(channel=WECOM, external_id=wid, user_id=user_id,
                                  linked_at=self._now()))  # fmt: skip
        self._done(by, user_id, "link_wecom", wecom_userid=wid)

    def unlink_wecom(self, wecom_userid: str, *, by: User | None = None) -> None:
        """Remove the link of ``wecom_userid``; ``NotFoundError`` if it has none."""
        wid = normalize_wecom_userid(wecom_userid)
        with self._db.session() as s:
            owner = s.scalar(
                select(ChatIdentityRow.user_id).where(
                    ChatIdentityRow.channel == WECOM, ChatIdentityRow.external_id == wid
                )
            )
        if owner is None:
            raise NotFoundError(f"WeCom userid {wid!r} is not linked to any user")
        self._check(by, owner, "unlink_wecom")
        with self._db.session() as s:
            s.delete(s.get_one(ChatIdentityRow, (WECOM, wid)))
        self._done(by, owner, "unlink_wecom", wecom_userid=wid)

    def user_by_wecom(self, wecom_userid: str) -> User:
        """The user a WeCom account speaks for; ``NotFoundError`` if it is not linked.

        A linked but disabled user is an :class:`AuthenticationError`.
        """
        wid = normalize_wecom_userid(wecom_userid)
        with self._db.session() as s:
            row = s.get(ChatIdentityRow, (WECOM, wid))
            if row is None:
                raise NotFoundError(
                    f"WeCom userid {wid!r} is not linked to a clawfed user; ask a data admin"
                )
            return _active(s, _require_user(s, row.user_id))

    def entitle(self, user_id: str, job_id: str, *, by: User | None = None) -> User:
        """Let ``user_id`` use the model service of ``job_id`` (idempotent)."""
        self._check(by, user_id, "entitle")
        with self._db.session() as s:
            row = _require_user(s, user_id)
            if s.get(JobRow, job_id) is None:
                raise NotFoundError(f"job {job_id!r} does not exist")
            if s.get(EntitlementRow, (user_id, job_id)) is None:
                s.add(EntitlementRow(user_id=user_id, job_id=job_id, granted_at=self._now()))
                s.flush()
            user = _user(s, row)
        self._done(by, user_id, "entitle", job_id=job_id)
        return user

    def disentitle(self, user_id: str, job_id: str, *, by: User | None = None) -> User:
        """Withdraw :meth:`entitle`; ``NotFoundError`` if it was not granted."""
        self._check(by, user_id, "disentitle")
        with self._db.session() as s:
            row = _require_user(s, user_id)
            grant = s.get(EntitlementRow, (user_id, job_id))
            if grant is None:
                raise NotFoundError(f"user {user_id!r} is not entitled to job {job_id!r}")
            s.delete(grant)
            s.flush()
            user = _user(s, row)
        self._done(by, user_id, "disentitle", job_id=job_id)
        return user


def _require_user(s: Session, user_id: str) -> UserRow:
    row = s.get(UserRow, user_id) if isinstance(user_id, str) else None
    if row is None:
        raise NotFoundError(f"user {user_id!r} does not exist")
    return row


def _active(s: Session, row: UserRow) -> User:
    if row.disabled_at is not None:
        raise AuthenticationError(
            AuthFailure.USER_DISABLED, f"user {row.user_id} is disabled ({row.disabled_reason})"
        )
    return _user(s, row)


def _user(s: Session, row: UserRow) -> User:
    jobs = s.scalars(select(EntitlementRow.job_id).where(EntitlementRow.user_id == row.user_id))
    return User(
        user_id=row.user_id, role=role_of(row.role), department=row.department,
        display_name=row.display_name, entitlements=frozenset(jobs),
        created_at=row.created_at, disabled_at=row.disabled_at,
    )  # fmt: skip


def _token(row: ApiTokenRow) -> TokenInfo:
    return TokenInfo(
        token_id=row.token_id, user_id=row.user_id, label=row.label,
        created_at=row.created_at, expires_at=row.expires_at,
        revoked_at=row.revoked_at, revoke_reason=row.revoke_reason,
    )  # fmt: skip
