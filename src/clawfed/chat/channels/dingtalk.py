"""Channel posting to a DingTalk (钉钉) custom robot, signed with HMAC-SHA256 (加签)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from clawfed.chat.channel import MessageKind, OutgoingMessage
from clawfed.chat.errors import (
    DingTalkError,
    FailureKind,
    UnsupportedMessageError,
)
from clawfed.chat.http_json import post_safely, reply_json
from clawfed.chat.ratelimit import RateLimiter
from clawfed.chat.text_split import split_utf8
from clawfed.core.errors import ConfigError

DINGTALK_MAX_BYTES = 18_000
"""Part size for long messages (DingTalk refuses bodies around 20 000 bytes; kept below)."""
DINGTALK_THROTTLE = 600.0
"""DingTalk throttles a robot for about 10 minutes after errcode 130101."""

_ERRCODES: dict[int, tuple[FailureKind, str]] = {
    310000: (
        FailureKind.CONFIG,
        "安全设置校验失败（签名、关键词或 IP） / security check failed: secret, keyword or IP",
    ),
    130101: (FailureKind.RATE_LIMITED, "发送太快（每分钟 20 条） / more than 20 messages a minute"),
}


def dingtalk_sign(timestamp_ms: int, secret: str) -> str:
    """Return base64(HMAC-SHA256(key=secret, msg=f"{timestamp_ms}\\n{secret}")).

    The value goes into the ``sign`` query parameter, URL-encoded (httpx encodes it).
    """
    string_to_sign = f"{timestamp_ms}\n{secret}".encode()
    digest = hmac.new(secret.encode(), string_to_sign, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


class DingTalkChannel:
    """Sends text and markdown to a DingTalk custom robot (20 messages a minute, queued).

    Parameters
    ----------
    webhook_url
        ``https://oapi.dingtalk.com/robot/send?access_token=...`` (a secret: never logged).
    secret
        The robot's 加签 secret (``SEC...``), or None when the robot uses keywords / IPs.
    http
        An ``httpx.Client`` (not closed by us); one is made and owned when omitted.
    clock
        Wall-clock seconds for the signature timestamp.
    limiter, sleep
        Send-slot limiter (default 20 per 60 s) and how to wait for a slot.
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
        if parts.scheme not in ("http", "https") or not parse_qs(parts.query).get("access_token"):
            raise ConfigError("DingTalk webhook_url must be http(s) with ?access_token=")
        if secret is not None and not secret:
            raise ConfigError("DingTalk secret must be None or non-empty")
        self._url = webhook_url
        self._secret = secret
        self._owns_http = http is None
        self._http = http if http is not None else httpx.Client(timeout=10.0)
        self._clock = clock
        self.limiter = limiter if limiter is not None else RateLimiter(20, 60.0)
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"DingTalkChannel(webhook_url=<hidden>, signed={self._secret is not None})"

    def close(self) -> None:
        """Close the HTTP client if this object made it."""
        if self._owns_http:
            self._http.close()

    def _post(self, body: dict[str, Any]) -> None:
        wait = self.limiter.reserve()
        if wait > 0:
            self._sleep(wait)
        url = httpx.URL(self._url)
        if self._secret is not None:
            stamp = int(self._clock() * 1000)
            # merge into the query: httpx's params= would replace the access_token
            sign = {"timestamp": str(stamp), "sign": dingtalk_sign(stamp, self._secret)}
            url = url.copy_merge_params(sign)
        response = post_safely(self._http, "DingTalk", str(url), json=body)
        data = reply_json(response, "DingTalk")
        code = data.get("errcode", 0)
        if code == 0:
            return
        errcode = code if isinstance(code, int) else -1
        kind, hint = _ERRCODES.get(errcode, (FailureKind.PERMANENT, "see DingTalk's error codes"))
        retry_after = None
        if kind is FailureKind.RATE_LIMITED:
            retry_after = DINGTALK_THROTTLE
            self.limiter.penalize(DINGTALK_THROTTLE)
        raise DingTalkError(errcode, str(data.get("errmsg", "")), kind, hint, retry_after)

    def send(self, message: OutgoingMessage) -> None:
        """Deliver one message (see ``Channel.send``); images are refused (robots need URLs)."""
        if message.kind is MessageKind.IMAGE:
            raise UnsupportedMessageError(
                "DingTalk custom robots cannot upload images; put an image URL in markdown"
            )
        at: dict[str, Any] = {"isAtAll": message.mentions_all}
        if message.named_mentions:
            at["atUserIds"] = list(message.named_mentions)
        # DingTalk only notifies a user whose @id also appears in the text itself.
        missing = [f"@{m}" for m in message.named_mentions if f"@{m}" not in message.text]
        text = message.text + ("\n" + " ".join(missing) if missing else "")
        for part in split_utf8(text, DINGTALK_MAX_BYTES):
            if message.kind is MessageKind.TEXT:
                body: dict[str, Any] = {"msgtype": "text", "text": {"content": part}}
            else:
                title = message.headline[:64] or "clawfed"
                body = {"msgtype": "markdown", "markdown": {"title": title, "text": part}}
            body["at"] = at
            self._post(body)
