"""The one interface every chat channel implements, and the message it carries."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable

from clawfed.chat.errors import MessageInvalidError

MENTION_ALL = "@all"
"""Mention that notifies everyone in the chat (mapped to each service's own form)."""


class MessageKind(StrEnum):
    """What an outgoing message is."""

    TEXT = "text"
    MARKDOWN = "markdown"
    IMAGE = "image"


@dataclass(frozen=True)
class OutgoingMessage:
    """A message for any channel.

    Attributes
    ----------
    kind
        Text, markdown or image.
    text
        The text or markdown; for an image, an optional caption sent after it.
    image
        Raw JPG/PNG bytes (image messages only).
    mentions
        Chat user ids to @-mention, or ``MENTION_ALL``.
    """

    kind: MessageKind
    text: str = ""
    image: bytes | None = None
    mentions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind in (MessageKind.TEXT, MessageKind.MARKDOWN) and not self.text.strip():
            raise MessageInvalidError(f"a {self.kind} message must have non-empty text")
        if self.kind is MessageKind.IMAGE and not self.image:
            raise MessageInvalidError("an image message must carry image bytes")
        if self.kind is not MessageKind.IMAGE and self.image is not None:
            raise MessageInvalidError(f"a {self.kind} message must not carry image bytes")
        for mention in self.mentions:
            if not mention or mention != mention.strip():
                raise MessageInvalidError(f"mentions must be non-empty ids, got {mention!r}")

    @classmethod
    def text_message(cls, text: str, mentions: tuple[str, ...] = ()) -> OutgoingMessage:
        """A plain-text message."""
        return cls(MessageKind.TEXT, text=text, mentions=mentions)

    @classmethod
    def markdown_message(cls, text: str, mentions: tuple[str, ...] = ()) -> OutgoingMessage:
        """A markdown message (each channel renders its own markdown dialect)."""
        return cls(MessageKind.MARKDOWN, text=text, mentions=mentions)

    @classmethod
    def image_message(cls, image: bytes, caption: str = "") -> OutgoingMessage:
        """An image message with an optional caption."""
        return cls(MessageKind.IMAGE, text=caption, image=image)

    @property
    def headline(self) -> str:
        """The first non-empty line of the text without heading marks ("" when no text)."""
        for line in self.text.splitlines():
            stripped = line.strip().lstrip("#").strip()
            if stripped:
                return stripped
        return ""

    @property
    def mentions_all(self) -> bool:
        """Whether the message mentions everyone."""
        return MENTION_ALL in self.mentions

    @property
    def named_mentions(self) -> tuple[str, ...]:
        """The mentioned ids other than ``MENTION_ALL``."""
        return tuple(m for m in self.mentions if m != MENTION_ALL)


@runtime_checkable
class Channel(Protocol):
    """A destination for outgoing chat messages (a robot, an app, a webhook)."""

    def send(self, message: OutgoingMessage) -> None:
        """Deliver the message, splitting it when it exceeds the service's size limit.

        Raises
        ------
        MessageInvalidError
            The message cannot be carried by this channel as it is.
        ChannelError
            The service refused it or could not be reached (``kind`` says whether to retry).
        """
        ...
