"""The exception tree of the chat layer: callback crypto, outgoing messages and chat services.

::

    ClawfedError
     └── ChatError                      anything the chat layer refuses or fails at
          ├── InvalidAesKeyError        EncodingAESKey is not 43 base64 characters (a ConfigError)
          ├── CallbackError             an inbound WeCom callback was refused
          │    ├── MalformedCallbackError   a query parameter or XML field is missing or wrong
          │    ├── MalformedXmlError        the body is not safe, well-formed XML
          │    ├── InvalidSignatureError    msg_signature does not match
          │    ├── MalformedCiphertextError the Encrypt field is not base64 of whole AES blocks
          │    ├── InvalidPaddingError      PKCS#7 (block 32) padding is wrong after decryption
          │    ├── MalformedPlaintextError  the decrypted layout (length field, UTF-8) is wrong
          │    ├── ReceiveIdMismatchError   the trailing receive id is not ours
          │    ├── StaleTimestampError      the timestamp is outside the accepted window
          │    └── ReplayedMessageError     this MsgId was already accepted
          ├── MessageInvalidError       an outgoing message breaks a rule before it is sent
          │    └── UnsupportedMessageError  the channel cannot carry this kind of message
          └── ChannelError              a chat service refused a message or could not be reached
               ├── WeComApiError            errcode != 0 from WeCom (errcode, errmsg, hint)
               ├── DingTalkError            errcode != 0 from a DingTalk robot
               ├── FeishuError              code != 0 from a Feishu / Lark bot
               ├── SlackError               a Slack webhook answered something other than ``ok``
               └── ChannelTransportError    network failure, or a reply of the wrong shape
"""

from __future__ import annotations

from enum import StrEnum

from clawfed.core.errors import ClawfedError, ConfigError


class ChatError(ClawfedError):
    """Base of every error raised by the chat layer."""


class InvalidAesKeyError(ChatError, ConfigError):
    """The EncodingAESKey does not decode to a 32-byte AES key."""


class CallbackError(ChatError):
    """An inbound callback was refused; the endpoint answers it with an error status."""


class MalformedCallbackError(CallbackError):
    """A required query parameter or XML field is missing or has the wrong form."""


class MalformedXmlError(CallbackError):
    """The XML is not well formed, too large, or declares a DOCTYPE / entities."""


class InvalidSignatureError(CallbackError):
    """The msg_signature does not match SHA1(sorted(token, timestamp, nonce, encrypt))."""


class MalformedCiphertextError(CallbackError):
    """The encrypted field is not base64 or not a whole number of AES blocks."""


class InvalidPaddingError(CallbackError):
    """The PKCS#7 padding (block size 32) of the decrypted buffer is invalid."""


class MalformedPlaintextError(CallbackError):
    """The decrypted buffer does not follow random(16) | length(4) | msg | receive id."""


class ReceiveIdMismatchError(CallbackError):
    """The receive id at the end of the decrypted buffer is not the configured one."""

    def __init__(self, expected: str, got: str) -> None:
        super().__init__(
            f"receive id mismatch: the message was encrypted for {got!r}, "
            f"this endpoint is configured for {expected!r}"
        )
        self.expected = expected
        self.got = got


class StaleTimestampError(CallbackError):
    """The callback timestamp is further from now than the accepted window."""

    def __init__(self, timestamp: int, now: float, window: float) -> None:
        super().__init__(
            f"timestamp must be within {window:g} s of now, got {timestamp} "
            f"({timestamp - now:+.0f} s from now)"
        )
        self.timestamp = timestamp
        self.window = window


class ReplayedMessageError(CallbackError):
    """A message with this id was already accepted (a WeCom retry or a replay)."""

    def __init__(self, key: str) -> None:
        super().__init__(f"message {key!r} was already accepted; duplicates are not processed")
        self.key = key


class MessageInvalidError(ChatError):
    """An outgoing message or its recipients break a rule of the chat service."""


class UnsupportedMessageError(MessageInvalidError):
    """The channel cannot carry this kind of message."""


class FailureKind(StrEnum):
    """What a caller (e.g. an outbox) should do about a failed send."""

    CONFIG = "config"  # wrong key / secret / id: fix configuration, do not retry
    RATE_LIMITED = "rate_limited"  # wait and retry the same message
    INVALID_REQUEST = "invalid_request"  # the message itself is wrong: do not retry as is
    TRANSIENT = "transient"  # the service or network failed: retry later
    PERMANENT = "permanent"  # anything else the service refused


class ChannelError(ChatError):
    """A chat service refused a message or could not be reached."""

    def __init__(
        self, service: str, kind: FailureKind, detail: str, retry_after: float | None = None
    ) -> None:
        super().__init__(f"{service}: {detail}")
        self.service = service
        self.kind = kind
        self.detail = detail
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        """Whether sending the same message again later can succeed."""
        return self.kind in (FailureKind.RATE_LIMITED, FailureKind.TRANSIENT)


class WeComApiError(ChannelError):
    """WeCom answered ``errcode != 0``; ``hint`` says in Chinese and English what to do."""

    def __init__(
        self,
        errcode: int,
        errmsg: str,
        hint: str,
        kind: FailureKind = FailureKind.PERMANENT,
        retry_after: float | None = None,
    ) -> None:
        short = errmsg.split(", hint:")[0].strip() or "(no errmsg)"
        super().__init__(
            "WeCom", kind, f"errcode {errcode} ({short}): {hint}", retry_after=retry_after
        )
        self.errcode = errcode
        self.errmsg = errmsg
        self.hint = hint


class DingTalkError(ChannelError):
    """A DingTalk custom robot answered ``errcode != 0``."""

    def __init__(
        self,
        errcode: int,
        errmsg: str,
        kind: FailureKind,
        hint: str,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(
            "DingTalk", kind, f"errcode {errcode} ({errmsg}): {hint}", retry_after=retry_after
        )
        self.errcode = errcode
        self.errmsg = errmsg


class FeishuError(ChannelError):
    """A Feishu / Lark custom bot answered ``code != 0``."""

    def __init__(self, code: int, msg: str, kind: FailureKind, hint: str) -> None:
        super().__init__("Feishu", kind, f"code {code} ({msg}): {hint}")
        self.code = code
        self.msg = msg


class SlackError(ChannelError):
    """A Slack incoming webhook answered with an error status or body."""

    def __init__(
        self, status: int, body: str, kind: FailureKind, hint: str, retry_after: float | None
    ) -> None:
        super().__init__(
            "Slack", kind, f"HTTP {status} ({body[:100]}): {hint}", retry_after=retry_after
        )
        self.status = status
        self.body = body


class ChannelTransportError(ChannelError):
    """The service could not be reached or answered something that is not its reply shape."""

    def __init__(self, service: str, detail: str) -> None:
        super().__init__(service, FailureKind.TRANSIENT, detail)
