"""Channel posting to a Feishu / Lark (飞书) custom bot, signed with HMAC-SHA256."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx

from clawfed.chat.channel import MessageKind, OutgoingMessage
from clawfed.chat.errors import (
    ChannelTransportError,
    FailureKind,
    FeishuError,
    UnsupportedMessageError,
)
from clawfed.chat.http_json import json_body, post_safely
from clawfed.chat.ratelimit import RateLimiter
from clawfed.chat.text_split import split_utf8
from clawfed.core.errors import ConfigError

FEISHU_MAX_BYTES = 9_000
"""Part size: request bodies must stay under 20 KB, and JSON escaping can double a text."""

_CODES: dict[int, tuple[FailureKind, str]] = {
    19021: (
        FailureKind.CONFIG,
        "签名校验失败或时间戳超过 1 小时 / signature mismatch or timestamp more than 1 h off",
    ),
    11232: (FailureKind.RATE_LIMITED, "发送频率过高 / sending too fast (100/min, 5/s per bot)"),
}


def feishu_sign(timestamp_s: int, secret: str) -> str:
    """Return base64(HMAC-SHA256(key=f"{timestamp_s}\\n{secret}", msg=b"")).

    Note the inversion against DingTalk: the timestamped string is the key, the message is empty.
    """
    key = f"{timestamp_s}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode("ascii")


def _at(user_id: str) -> str:
    return (
        '<at user_id="all">所有人</at>' if user_id == "@all" else f'<at user_id="{user_id}"></at>'
    )


def _card_at(user_id: str) -> str:
    return "<at id=all></at>" if user_id == "@all" else f"<at id={user_id}></at>"


class FeishuChannel:
    """Sends text (``msg_type=text``) and markdown (an interactive card) to a Feishu bot.

    Parameters
    ----------
    webhook_url
        ``https://open.feishu.cn/open-apis/bot/v2/hook/<token>`` (a secret: never logged).
    secret
        The bot's signature secret, or None when signing is off.
    http
        An ``httpx.Client`` (not closed by us); one is made and owned when omitted.
    clock
        Wall-clock seconds for the signature timestamp.
    limiter, sleep
        Send-slot limiter (default 5 per second) and how to wait for a slot.
    """

    def __init__(
        self,
        webhook_url: str,
        secret: str | None = None,
        http: httpx.Client | None = None,
        *,
        clock: Callable[[], float] = time.time,
        limiter: RateLimiter | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        parts = urlsplit(webhook_url)
        if parts.scheme not in ("http", "https") or "/hook/" not in parts.path:
            raise ConfigError("Feishu webhook_url must be http(s) .../bot/v2/hook/<token>")
        if secret is not None and not secret:
            raise ConfigError("Feishu secret must be None or non-empty")
        self._url = webhook_url
        self._secret = secret
        self._owns_http = http is None
        self._http = http if http is not None else httpx.Client(timeout=10.0)
        self._clock = clock
        self.limiter = limiter if limiter is not None else RateLimiter(5, 1.0)
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"FeishuChannel(webhook_url=<hidden>, signed={self._secret is not None})"

    def close(self) -> None:
        """Close the HTTP client if this object made it."""
        if self._owns_http:
            self._http.close()

    def _post(self, body: dict[str, Any]) -> None:
        wait = self.limiter.reserve()
        if wait > 0:
            self._sleep(wait)
        if self._secret is not None:
            stamp = int(self._clock())
            body = {"timestamp": str(stamp), "sign": feishu_sign(stamp, self._secret), **body}
        response = post_safely(self._http, "Feishu", self._url, json=body)
        data = json_body(response, "Feishu")
        # Current replies carry code/msg; older bots answer StatusCode/StatusMessage.
        code = data.get("code", data.get("StatusCode"))
        if not isinstance(code, int):
            raise ChannelTransportError("Feishu", f"reply lacks an integer code: {str(data)[:100]}")
        if code == 0 and response.status_code == 200:
            return
        kind, hint = _CODES.get(code, (FailureKind.PERMANENT, "see Feishu's bot error codes"))
        if code == 0:  # an HTTP error without a service code
            kind = FailureKind.TRANSIENT if response.status_code >= 500 else FailureKind.PERMANENT
            hint = f"HTTP {response.status_code}"
        message = str(data.get("msg", data.get("StatusMessage", "")))
        raise FeishuError(code, message, kind, hint)

    def send(self, message: OutgoingMessage) -> None:
        """Deliver one message (see ``Channel.send``); images are refused (no image_key)."""
        if message.kind is MessageKind.IMAGE:
            raise UnsupportedMessageError(
                "Feishu custom bots cannot upload images (an app must provide an image_key)"
            )
        if message.kind is MessageKind.TEXT:
            mentions = "".join(_at(m) for m in message.mentions)
            text = f"{mentions} {message.text}" if mentions else message.text
            for part in split_utf8(text, FEISHU_MAX_BYTES):
                self._post({"msg_type": "text", "content": {"text": part}})
            return
        mentions = "".join(_card_at(m) for m in message.mentions)
        text = f"{message.text}\n{mentions}" if mentions else message.text
        for part in split_utf8(text, FEISHU_MAX_BYTES):
            card = {"elements": [{"tag": "markdown", "content": part}]}
            self._post({"msg_type": "interactive", "card": card})
