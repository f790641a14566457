"""Turning a WeCom callback request into a verified ``IncomingMessage`` (and passive replies)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from clawfed.chat.errors import MalformedCallbackError, MessageInvalidError
from clawfed.chat.wecom_crypto import ReplayGuard, WeComCrypto
from clawfed.chat.wecom_messages import TEXT_MAX_BYTES
from clawfed.chat.wecom_xml import build_flat_xml, parse_flat_xml, require_field


@dataclass(frozen=True)
class IncomingMessage:
    """A message or event an employee's action sent to the application.

    Attributes
    ----------
    from_user
        Sender's WeCom userid (``FromUserName``).
    msg_type
        ``MsgType`` as sent: ``text``, ``image``, ``voice``, ``video``, ``location``,
        ``link`` or ``event``.
    content
        Text of a text message (``Content``); "" for other types.
    msg_id
        ``MsgId`` (64-bit integer as text); events have none and get
        ``event:<from_user>:<create_time>:<event>`` so they can be deduplicated too.
    agent_id
        The application's AgentID, or None when absent.
    create_time
        Unix seconds (``CreateTime``).
    event
        The ``Event`` field of events (e.g. ``enter_agent``, ``click``), else "".
    """

    from_user: str
    msg_type: str
    content: str
    msg_id: str
    agent_id: int | None
    create_time: int
    event: str = ""

    @property
    def is_text(self) -> bool:
        """Whether this is a text message (the kind that carries commands)."""
        return self.msg_type == "text"


def _param(params: Mapping[str, str], name: str) -> str:
    value = params.get(name, "")
    if not value:
        raise MalformedCallbackError(f"callback query must carry a non-empty {name!r}")
    return value


def _int_field(fields: Mapping[str, str], name: str) -> int:
    text = require_field(fields, name).strip()
    try:
        return int(text)
    except ValueError:
        raise MalformedCallbackError(
            f"XML field <{name}> must be an integer, got {text[:40]!r}"
        ) from None


def parse_incoming(plain_xml: str) -> IncomingMessage:
    """Parse a decrypted callback XML into an ``IncomingMessage``."""
    fields = parse_flat_xml(plain_xml)
    from_user = require_field(fields, "FromUserName").strip()
    msg_type = require_field(fields, "MsgType").strip().lower()
    if not from_user or not msg_type:
        raise MalformedCallbackError("callback FromUserName and MsgType must not be empty")
    create_time = _int_field(fields, "CreateTime")
    agent_id = _int_field(fields, "AgentID") if fields.get("AgentID", "").strip() else None
    event = fields.get("Event", "").strip() if msg_type == "event" else ""
    if msg_type == "event":
        msg_id = f"event:{from_user}:{create_time}:{event}"
    else:
        msg_id = require_field(fields, "MsgId").strip()
        if not msg_id.isdigit():
            raise MalformedCallbackError(f"callback MsgId must be digits, got {msg_id[:40]!r}")
    content = fields.get("Content", "") if msg_type == "text" else ""
    return IncomingMessage(
        from_user=from_user,
        msg_type=msg_type,
        content=content,
        msg_id=msg_id,
        agent_id=agent_id,
        create_time=create_time,
        event=event,
    )


def handle_callback(
    crypto: WeComCrypto,
    replay_guard: ReplayGuard,
    params: Mapping[str, str],
    body: str | bytes,
) -> IncomingMessage:
    """Verify, decrypt and deduplicate one pushed callback (``POST URL?msg_signature=…``).

    Parameters
    ----------
    crypto
        The application's callback crypto (Token, EncodingAESKey, corp id).
    replay_guard
        Refuses stale timestamps and MsgIds already accepted.
    params
        The decoded query parameters ``msg_signature``, ``timestamp``, ``nonce``.
    body
        The raw request body (``<xml><ToUserName/><AgentID/><Encrypt/></xml>``).

    Raises
    ------
    CallbackError
        Any specific subclass: bad signature, padding, receive id, XML, stale timestamp,
        or ``ReplayedMessageError`` for a WeCom retry of a message already accepted
        (answer that one with an empty HTTP 200 so WeCom stops retrying).
    """
    signature = _param(params, "msg_signature")
    timestamp = _param(params, "timestamp")
    nonce = _param(params, "nonce")
    plain = crypto.decrypt_message(body, signature, timestamp, nonce)
    replay_guard.check_timestamp(timestamp)
    message = parse_incoming(plain)
    replay_guard.remember(message.msg_id)
    return message


def handle_url_verification(
    crypto: WeComCrypto, replay_guard: ReplayGuard, params: Mapping[str, str]
) -> str:
    """Answer WeCom's URL check (``GET URL?msg_signature&timestamp&nonce&echostr``).

    Returns the decrypted ``echostr``, to be sent back as the bare response body.
    """
    plain = crypto.verify_url(
        _param(params, "msg_signature"),
        _param(params, "timestamp"),
        _param(params, "nonce"),
        _param(params, "echostr"),
    )
    replay_guard.check_timestamp(params["timestamp"])
    return plain


def passive_text_reply(
    crypto: WeComCrypto,
    to_user: str,
    content: str,
    nonce: str,
    timestamp: int | None = None,
) -> str:
    """Build the encrypted passive reply carrying a text message to ``to_user``.

    Content is limited to 2048 UTF-8 bytes; send longer answers with ``message/send``.
    """
    size = len(content.encode("utf-8"))
    if not content.strip() or size > TEXT_MAX_BYTES:
        raise MessageInvalidError(
            f"passive reply text must be 1..{TEXT_MAX_BYTES} UTF-8 bytes, got {size}"
        )
    stamp = int(time.time()) if timestamp is None else timestamp
    plain = build_flat_xml(
        {
            "ToUserName": to_user,
            "FromUserName": crypto.receive_id,
            "CreateTime": stamp,
            "MsgType": "text",
            "Content": content,
        }
    )
    return crypto.encrypt_message(plain, nonce, stamp)
