"""Channel posting to a Slack incoming webhook."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx

from clawfed.chat.channel import MessageKind, OutgoingMessage
from clawfed.chat.errors import (
    FailureKind,
    SlackError,
    UnsupportedMessageError,
)
from clawfed.chat.http_json import post_safely
from clawfed.chat.ratelimit import RateLimiter
from clawfed.chat.text_split import split_chars
from clawfed.core.errors import ConfigError

SLACK_TEXT_MAX_CHARS = 4000
"""Slack advises at most 4000 characters of ``text`` per message."""
SLACK_SECTION_MAX_CHARS = 3000
"""Limit of a section block's text."""

_STATUS: dict[int, tuple[FailureKind, str]] = {
    400: (FailureKind.INVALID_REQUEST, "Slack refused the payload"),
    403: (FailureKind.CONFIG, "the webhook may not post here (action_prohibited)"),
    404: (FailureKind.CONFIG, "the webhook or its channel no longer exists"),
    410: (FailureKind.CONFIG, "the webhook's channel is archived"),
    429: (FailureKind.RATE_LIMITED, "too many messages (about 1 per second per webhook)"),
}


def to_mrkdwn(markdown: str) -> str:
    """Convert common markdown to Slack mrkdwn: headings and **bold** to *bold*, links to <u|t>."""
    text = re.sub(r"^#{1,6}\s+(.+)$", r"*\1*", markdown, flags=re.MULTILINE)
    text = re.sub(r"\*\*(.+?)\*\*", r"*\1*", text)
    return re.sub(r"\[([^\]]+)\]\((https?://[^)\s]+)\)", r"<\2|\1>", text)


def _mention(user_id: str) -> str:
    return "<!channel>" if user_id == "@all" else f"<@{user_id}>"


class SlackChannel:
    """Sends text and markdown (as mrkdwn section blocks) to a Slack incoming webhook.

    Parameters
    ----------
    webhook_url
        ``https://hooks.slack.com/services/T.../B.../...`` (a secret: never logged).
    http
        An ``httpx.Client`` (not closed by us); one is made and owned when omitted.
    limiter, sleep
        Send-slot limiter (default 1 per second) and how to wait for a slot.
    """

    def __init__(
        self,
        webhook_url: str,
        http: httpx.Client | None = None,
        *,
        limiter: RateLimiter | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        parts = urlsplit(webhook_url)
        if parts.scheme not in ("http", "https") or not parts.path.strip("/"):
            raise ConfigError("Slack webhook_url must be an http(s) URL with a path")
        self._url = webhook_url
        self._owns_http = http is None
        self._http = http if http is not None else httpx.Client(timeout=10.0)
        self.limiter = limiter if limiter is not None else RateLimiter(1, 1.0)
        self._sleep = sleep

    def __repr__(self) -> str:
        return "SlackChannel(webhook_url=<hidden>)"

    def close(self) -> None:
        """Close the HTTP client if this object made it."""
        if self._owns_http:
            self._http.close()

    def _post(self, body: dict[str, Any]) -> None:
        wait = self.limiter.reserve()
        if wait > 0:
            self._sleep(wait)
        response = post_safely(self._http, "Slack", self._url, json=body)
        if response.status_code == 200 and response.text.strip() == "ok":
            return
        status = response.status_code
        default = FailureKind.TRANSIENT if status >= 500 else FailureKind.PERMANENT
        kind, hint = _STATUS.get(status, (default, "unexpected reply from Slack"))
        retry_after: float | None = None
        if kind is FailureKind.RATE_LIMITED:
            try:
                retry_after = float(response.headers.get("Retry-After", "1"))
            except ValueError:
                retry_after = 1.0
            self.limiter.penalize(retry_after)
        raise SlackError(status, response.text, kind, hint, retry_after)

    def send(self, message: OutgoingMessage) -> None:
        """Deliver one message (see ``Channel.send``); images are refused (need public URLs)."""
        if message.kind is MessageKind.IMAGE:
            raise UnsupportedMessageError(
                "Slack incoming webhooks cannot upload images; link a public image URL instead"
            )
        mentions = " ".join(_mention(m) for m in message.mentions)
        if message.kind is MessageKind.TEXT:
            text = f"{mentions} {message.text}" if mentions else message.text
            for part in split_chars(text, SLACK_TEXT_MAX_CHARS):
                self._post({"text": part})
            return
        body = to_mrkdwn(message.text) + (f"\n{mentions}" if mentions else "")
        fallback = message.headline or "clawfed"
        for part in split_chars(body, SLACK_SECTION_MAX_CHARS):
            section = {"type": "section", "text": {"type": "mrkdwn", "text": part}}
            self._post({"text": fallback, "blocks": [section]})
