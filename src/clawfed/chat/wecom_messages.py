"""Typed pieces of WeCom messages: recipients, news articles, send results and size limits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from clawfed.chat.errors import MessageInvalidError

TEXT_MAX_BYTES = 2048
"""``text.content`` limit for robots, app messages and passive replies (UTF-8 bytes)."""
ROBOT_MARKDOWN_MAX_BYTES = 4096
"""``markdown.content`` limit for the group robot (errcode 40058 beyond)."""
APP_MARKDOWN_MAX_BYTES = 2048
"""``markdown.content`` limit for application messages (``message/send``)."""
ROBOT_IMAGE_MAX_BYTES = 2 * 1024 * 1024
"""Raw JPG/PNG limit for robot image messages."""
NEWS_MAX_ARTICLES = 8
NEWS_TITLE_MAX_BYTES = 128
NEWS_DESCRIPTION_MAX_BYTES = 512
MAX_USERS = 1000
MAX_PARTIES_OR_TAGS = 100
MIN_MEDIA_BYTES = 6  # WeCom requires every uploaded file to be larger than 5 bytes


def image_mime(data: bytes) -> str | None:
    """Return ``image/png`` or ``image/jpeg`` from the file's magic bytes, else None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    return None


def check_image(data: bytes, max_bytes: int) -> str:
    """Refuse anything but a JPG/PNG of ``MIN_MEDIA_BYTES``..``max_bytes``; return its MIME type."""
    if not MIN_MEDIA_BYTES <= len(data) <= max_bytes:
        raise MessageInvalidError(
            f"image must be {MIN_MEDIA_BYTES}..{max_bytes} bytes, got {len(data)}"
        )
    mime = image_mime(data)
    if mime is None:
        raise MessageInvalidError(
            f"image must be JPG or PNG, got bytes starting {data[:8].hex()!r}"
        )
    return mime


def _byte_len(text: str) -> int:
    return len(text.encode("utf-8"))


@dataclass(frozen=True)
class NewsArticle:
    """One article card of a ``news`` message."""

    title: str
    url: str
    description: str = ""
    picurl: str = ""

    def __post_init__(self) -> None:
        if not self.title.strip():
            raise MessageInvalidError("news article title must not be empty")
        if _byte_len(self.title) > NEWS_TITLE_MAX_BYTES:
            raise MessageInvalidError(
                f"news title must be <= {NEWS_TITLE_MAX_BYTES} UTF-8 bytes, "
                f"got {_byte_len(self.title)}"
            )
        if _byte_len(self.description) > NEWS_DESCRIPTION_MAX_BYTES:
            raise MessageInvalidError(
                f"news description must be <= {NEWS_DESCRIPTION_MAX_BYTES} UTF-8 bytes, "
                f"got {_byte_len(self.description)}"
            )
        for name, value in (("url", self.url), ("picurl", self.picurl)):
            if (value or name == "url") and not value.startswith(("http://", "https://")):
                raise MessageInvalidError(f"news {name} must be an http(s) URL, got {value!r}")


def news_payload(articles: Sequence[NewsArticle]) -> dict[str, Any]:
    """Return the ``news`` object for 1..8 articles."""
    if not 1 <= len(articles) <= NEWS_MAX_ARTICLES:
        raise MessageInvalidError(
            f"news must hold 1..{NEWS_MAX_ARTICLES} articles, got {len(articles)}"
        )
    items = []
    for article in articles:
        item = {"title": article.title, "description": article.description, "url": article.url}
        if article.picurl:
            item["picurl"] = article.picurl
        items.append(item)
    return {"articles": items}


@dataclass(frozen=True)
class Recipients:
    """Who an application message goes to: user ids, department (party) ids, tag ids.

    ``Recipients(users=("@all",))`` reaches everyone in the app's visible range.
    """

    users: tuple[str, ...] = ()
    parties: tuple[int, ...] = ()
    tags: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not (self.users or self.parties or self.tags):
            raise MessageInvalidError("recipients must name at least one user, party or tag")
        if len(self.users) > MAX_USERS:
            raise MessageInvalidError(
                f"at most {MAX_USERS} users per message, got {len(self.users)}"
            )
        for kind, ids in (("parties", self.parties), ("tags", self.tags)):
            if len(ids) > MAX_PARTIES_OR_TAGS:
                raise MessageInvalidError(
                    f"at most {MAX_PARTIES_OR_TAGS} {kind} per message, got {len(ids)}"
                )
            for value in ids:
                if value <= 0:
                    raise MessageInvalidError(f"{kind} ids must be positive, got {value}")
        for user in self.users:
            if not user or "|" in user or user != user.strip():
                raise MessageInvalidError(f"user ids must be non-empty, without '|', got {user!r}")
        if "@all" in self.users and len(self.users) > 1:
            raise MessageInvalidError("'@all' must be the only user when it is used")

    def as_fields(self) -> dict[str, str]:
        """The ``touser`` / ``toparty`` / ``totag`` fields of ``message/send``."""
        fields: dict[str, str] = {}
        if self.users:
            fields["touser"] = "|".join(self.users)
        if self.parties:
            fields["toparty"] = "|".join(str(p) for p in self.parties)
        if self.tags:
            fields["totag"] = "|".join(str(t) for t in self.tags)
        return fields


def _ids(value: object) -> tuple[str, ...]:
    if not isinstance(value, str):
        return ()
    return tuple(part for part in value.split("|") if part)


def _union(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
    return a + tuple(x for x in b if x not in a)


@dataclass(frozen=True)
class SendResult:
    """What ``message/send`` reported; invalid recipients are reported, not raised."""

    msg_ids: tuple[str, ...] = ()
    invalid_users: tuple[str, ...] = ()
    invalid_parties: tuple[str, ...] = ()
    invalid_tags: tuple[str, ...] = ()
    unlicensed_users: tuple[str, ...] = ()

    @classmethod
    def from_reply(cls, reply: Mapping[str, Any]) -> SendResult:
        """Read a successful ``message/send`` reply."""
        msgid = reply.get("msgid")
        return cls(
            msg_ids=(str(msgid),) if msgid else (),
            invalid_users=_ids(reply.get("invaliduser")),
            invalid_parties=_ids(reply.get("invalidparty")),
            invalid_tags=_ids(reply.get("invalidtag")),
            unlicensed_users=_ids(reply.get("unlicenseduser")),
        )

    def merge(self, other: SendResult) -> SendResult:
        """Combine the results of the parts of one split message."""
        return SendResult(
            msg_ids=self.msg_ids + other.msg_ids,
            invalid_users=_union(self.invalid_users, other.invalid_users),
            invalid_parties=_union(self.invalid_parties, other.invalid_parties),
            invalid_tags=_union(self.invalid_tags, other.invalid_tags),
            unlicensed_users=_union(self.unlicensed_users, other.unlicensed_users),
        )

    @property
    def fully_delivered(self) -> bool:
        """True when WeCom reported no invalid or unlicensed recipient."""
        return not (
            self.invalid_users or self.invalid_parties or self.invalid_tags or self.unlicensed_users
        )
