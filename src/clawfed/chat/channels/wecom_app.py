"""Channel sending as a WeCom self-built application (自建应用) to fixed recipients."""

from __future__ import annotations

import logging
from dataclasses import replace

from clawfed.chat.channel import MessageKind, OutgoingMessage
from clawfed.chat.errors import UnsupportedMessageError
from clawfed.chat.wecom_api import WeComClient
from clawfed.chat.wecom_messages import Recipients, SendResult

_log = logging.getLogger(__name__)


class WeComAppChannel:
    """Sends ``OutgoingMessage``s with ``message/send`` to the given recipients.

    Application messages are direct messages, so a mention means "deliver to this user
    too": mentioned user ids are added to the recipients of that message. ``@all`` is
    refused because it would message the app's whole visible range; name it in
    ``Recipients(users=("@all",))`` on purpose instead. Images are uploaded first.

    Parameters
    ----------
    client
        The application's ``WeComClient``.
    to
        Default recipients of every message.
    image_filename
        Name shown for uploaded images.
    """

    def __init__(
        self, client: WeComClient, to: Recipients, image_filename: str = "clawfed.png"
    ) -> None:
        self._client = client
        self._to = to
        self._filename = image_filename
        self.last_result: SendResult | None = None

    def _recipients(self, message: OutgoingMessage) -> Recipients:
        if message.mentions_all:
            raise UnsupportedMessageError(
                "WeCom app messages cannot mention @all; address Recipients(users=('@all',))"
            )
        if not message.mentions or "@all" in self._to.users:
            return self._to
        extra = tuple(m for m in message.mentions if m not in self._to.users)
        return replace(self._to, users=self._to.users + extra)

    def send(self, message: OutgoingMessage) -> None:
        """Deliver one message (see ``Channel.send``); see ``last_result`` for invalid ids."""
        to = self._recipients(message)
        if message.kind is MessageKind.TEXT:
            result = self._client.send_text(message.text, to)
        elif message.kind is MessageKind.MARKDOWN:
            result = self._client.send_markdown(message.text, to)
        else:
            assert message.image is not None
            media_id = self._client.upload_image(message.image, self._filename)
            result = self._client.send_image(media_id, to)
            if message.text.strip():
                result = result.merge(self._client.send_text(message.text, to))
        if not result.fully_delivered:
            _log.warning(
                "WeCom did not deliver to users=%s parties=%s tags=%s unlicensed=%s",
                result.invalid_users,
                result.invalid_parties,
                result.invalid_tags,
                result.unlicensed_users,
            )
        self.last_result = result
