"""What the chat bot sent to whom, from the chat outbox: the transcript view of the dashboard."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from clawfed.governance.db import Database
from clawfed.governance.outbox_tables import ChatOutboxRow
from clawfed.governance.rbac_tables import ChatIdentityRow

#: Most messages one transcript page shows (the newest).
PAGE = 200


@dataclass(frozen=True)
class ChatLine:
    """One message the bot sent (or tried to send)."""

    at: datetime
    channel: str
    target: str
    text: str
    status: str


def _text(payload: object) -> str:
    if isinstance(payload, dict):
        for key in ("text", "content", "markdown", "title", "description"):
            value = payload.get(key)
            if isinstance(value, str) and value:
                return value
            if isinstance(value, dict):
                inner = _text(value)
                if inner:
                    return inner
    return ""


def transcript(db: Database, user_id: str | None) -> list[ChatLine]:
    """Messages to ``user_id``'s chat accounts (every message for ``None``), newest first."""
    with db.session() as s:
        stmt = select(ChatOutboxRow).order_by(ChatOutboxRow.id.desc()).limit(PAGE)
        if user_id is not None:
            ids = list(
                s.scalars(
                    select(ChatIdentityRow.external_id).where(ChatIdentityRow.user_id == user_id)
                )
            )
            if not ids:
                return []
            stmt = stmt.where(ChatOutboxRow.target.in_(ids))
        return [
            ChatLine(r.created_at, r.channel, r.target, _text(r.payload) or r.kind, r.status)
            for r in s.scalars(stmt)
        ]
