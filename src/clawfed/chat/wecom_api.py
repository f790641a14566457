"""Clients for WeCom's outgoing APIs: the self-built app (``WeComClient``) and the group robot."""

from __future__ import annotations

import base64
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from clawfed.chat.errors import (
    ChannelTransportError,
    FailureKind,
    MessageInvalidError,
    WeComApiError,
)
from clawfed.chat.http_json import JsonObject, get_safely, post_safely, reply_json
from clawfed.chat.ratelimit import RateLimiter
from clawfed.chat.text_split import split_utf8
from clawfed.chat.wecom_errcodes import RATE_LIMIT_BACKOFF, TOKEN_ERRCODES, wecom_error
from clawfed.chat.wecom_messages import (
    APP_MARKDOWN_MAX_BYTES,
    ROBOT_IMAGE_MAX_BYTES,
    ROBOT_MARKDOWN_MAX_BYTES,
    TEXT_MAX_BYTES,
    NewsArticle,
    Recipients,
    SendResult,
    check_image,
    news_payload,
)
from clawfed.core.errors import ConfigError

DEFAULT_API_BASE = "https://qyapi.weixin.qq.com/cgi-bin"
APP_IMAGE_MAX_BYTES = 10 * 1024 * 1024
"""Current limit for ``media/upload?type=image`` (older WeCom docs say 2 MB: configurable)."""

_log = logging.getLogger(__name__)


def _errcode(data: Mapping[str, Any]) -> int:
    code = data.get("errcode", 0)
    if not isinstance(code, int):
        raise ChannelTransportError("WeCom", f"errcode must be an integer, got {code!r}")
    return code


class WeComClient:
    """Sends messages as a WeCom self-built application, caching its access_token.

    Parameters
    ----------
    base_url
        API root, e.g. ``https://qyapi.weixin.qq.com/cgi-bin`` (the fake's ``api_base`` in tests).
    corp_id, corp_secret, agent_id
        The corp id, the application's Secret and its AgentId.
    http
        An ``httpx.Client`` to use (not closed by us); one is made and owned when omitted.
    clock
        Monotonic seconds for token expiry (injectable).
    token_margin
        Seconds before ``expires_in`` at which a cached token is treated as expired
        (tokens living less than twice the margin are reused for half their life).
    max_image_bytes
        Largest image ``upload_image`` accepts.
    """

    def __init__(
        self,
        base_url: str,
        corp_id: str,
        corp_secret: str,
        agent_id: int,
        http: httpx.Client | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        token_margin: float = 300.0,
        max_image_bytes: int = APP_IMAGE_MAX_BYTES,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"base_url must start with http:// or https://, got {base_url!r}")
        if not corp_id or not corp_secret:
            raise ConfigError("corp_id and corp_secret must be non-empty")
        if agent_id <= 0:
            raise ConfigError(f"agent_id must be a positive integer, got {agent_id}")
        self._base = base_url.rstrip("/")
        self._corp_id = corp_id
        self._secret = corp_secret
        self.agent_id = agent_id
        self._owns_http = http is None
        self._http = http if http is not None else httpx.Client(timeout=10.0)
        self._clock = clock
        self._margin = token_margin
        self._max_image_bytes = max_image_bytes
        self._token: str | None = None
        self._token_expires = 0.0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"WeComClient(base_url={self._base!r}, corp_id={self._corp_id!r}, "
            f"agent_id={self.agent_id})"
        )

    def close(self) -> None:
        """Close the HTTP client if this object made it."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> WeComClient:
        return self

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.close()

    def access_token(self) -> str:
        """Return a valid access_token, fetching one from ``gettoken`` when none is cached."""
        with self._lock:
            if self._token is not None and self._clock() < self._token_expires:
                return self._token
            response = get_safely(
                self._http,
                "WeCom",
                f"{self._base}/gettoken",
                params={"corpid": self._corp_id, "corpsecret": self._secret},
            )
            data = reply_json(response, "WeCom")
            code = _errcode(data)
            if code != 0:
                raise wecom_error(code, str(data.get("errmsg", "")))
            token, expires_in = data.get("access_token"), data.get("expires_in")
            if not isinstance(token, str) or not token or not isinstance(expires_in, int):
                raise ChannelTransportError("WeCom", "gettoken reply lacks access_token/expires_in")
            lifetime = (
                expires_in - self._margin if expires_in > 2 * self._margin else expires_in / 2
            )
            self._token, self._token_expires = token, self._clock() + lifetime
            _log.debug("fetched a WeCom access_token valid for %.0f s", lifetime)
            return token

    def invalidate_token(self) -> None:
        """Forget the cached token so the next call fetches a new one."""
        with self._lock:
            self._token = None

    def _call(
        self,
        path: str,
        *,
        json: JsonObject | None = None,
        params: Mapping[str, str] | None = None,
        files: Mapping[str, tuple[str, bytes, str]] | None = None,
    ) -> JsonObject:
        """POST to ``path`` with the token; on 40014/42001 refresh the token once and retry."""
        for attempt in (1, 2):
            token = self.access_token()
            query = {**(params or {}), "access_token": token}
            response = post_safely(
                self._http, "WeCom", f"{self._base}/{path}", params=query, json=json, files=files
            )
            data = reply_json(response, "WeCom")
            code = _errcode(data)
            if code == 0:
                return data
            if code in TOKEN_ERRCODES and attempt == 1:
                _log.info("WeCom access_token refused (errcode %d); refreshing once", code)
                self.invalidate_token()
                continue
            raise wecom_error(code, str(data.get("errmsg", "")))
        raise AssertionError("unreachable")  # pragma: no cover

    def get_json(self, path: str, params: Mapping[str, str]) -> JsonObject:
        """GET ``path`` with the token (e.g. ``user/get``); on 40014/42001 refresh once, retry."""
        for attempt in (1, 2):
            query = {**params, "access_token": self.access_token()}
            response = get_safely(self._http, "WeCom", f"{self._base}/{path}", params=query)
            data = reply_json(response, "WeCom")
            code = _errcode(data)
            if code == 0:
                return data
            if code in TOKEN_ERRCODES and attempt == 1:
                self.invalidate_token()
                continue
            raise wecom_error(code, str(data.get("errmsg", "")))
        raise AssertionError("unreachable")  # pragma: no cover

    def _send(self, to: Recipients, msgtype: str, payload: JsonObject) -> JsonObject:
        body: JsonObject = {**to.as_fields(), "agentid": self.agent_id, "msgtype": msgtype}
        body[msgtype] = payload
        return self._call("message/send", json=body)

    def _send_parts(self, to: Recipients, msgtype: str, parts: Sequence[str]) -> SendResult:
        result = SendResult()
        for part in parts:
            result = result.merge(SendResult.from_reply(self._send(to, msgtype, {"content": part})))
        return result

    def send_text(self, content: str, to: Recipients) -> SendResult:
        """Send text, split at 2048 UTF-8 bytes (preferring line breaks) into several messages."""
        if not content.strip():
            raise MessageInvalidError("text content must not be empty")
        return self._send_parts(to, "text", split_utf8(content, TEXT_MAX_BYTES))

    def send_markdown(self, content: str, to: Recipients) -> SendResult:
        """Send WeCom markdown (v1 subset), split at the app limit of 2048 UTF-8 bytes."""
        if not content.strip():
            raise MessageInvalidError("markdown content must not be empty")
        return self._send_parts(to, "markdown", split_utf8(content, APP_MARKDOWN_MAX_BYTES))

    def send_image(self, media_id: str, to: Recipients) -> SendResult:
        """Send an image previously uploaded with ``upload_image``."""
        if not media_id:
            raise MessageInvalidError("media_id must not be empty")
        return SendResult.from_reply(self._send(to, "image", {"media_id": media_id}))

    def send_news(self, articles: Sequence[NewsArticle], to: Recipients) -> SendResult:
        """Send 1 to 8 news articles (title, description, url, picurl)."""
        return SendResult.from_reply(self._send(to, "news", news_payload(articles)))

    def upload_image(self, data: bytes, filename: str) -> str:
        """Upload a JPG/PNG as temporary media (valid 3 days) and return its media_id."""
        mime = check_image(data, self._max_image_bytes)
        if not filename or "/" in filename or "\\" in filename:
            raise MessageInvalidError(f"filename must be a bare file name, got {filename!r}")
        reply = self._call(
            "media/upload", params={"type": "image"}, files={"media": (filename, data, mime)}
        )
        media_id = reply.get("media_id")
        if not isinstance(media_id, str) or not media_id:
            raise ChannelTransportError("WeCom", "media/upload reply lacks media_id")
        return media_id


def _robot_key_check(webhook_url: str) -> None:
    parts = urlsplit(webhook_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError("robot webhook_url must be an http(s) URL")
    if not parse_qs(parts.query).get("key", [""])[0]:
        raise ConfigError("robot webhook_url must carry the robot's ?key=...")


class WeComRobot:
    """Posts to a WeCom group robot (群机器人), queueing on its 20 messages/minute limit.

    Parameters
    ----------
    webhook_url
        The full ``.../cgi-bin/webhook/send?key=KEY`` URL (a secret: never logged).
    http
        An ``httpx.Client`` to use (not closed by us); one is made and owned when omitted.
    limiter
        Send-slot limiter; defaults to 20 per 60 s. Share one per robot key.
    sleep
        How to wait for a slot (default ``time.sleep``; tests pass a fake clock's sleep).
    max_rate_limit_retries
        Extra attempts after errcode 45009, each after backing off 60 s.
    """

    def __init__(
        self,
        webhook_url: str,
        http: httpx.Client | None = None,
        *,
        limiter: RateLimiter | None = None,
        sleep: Callable[[float], None] = time.sleep,
        max_rate_limit_retries: int = 3,
    ) -> None:
        _robot_key_check(webhook_url)
        if max_rate_limit_retries < 0:
            raise ConfigError(f"max_rate_limit_retries must be >= 0, got {max_rate_limit_retries}")
        self._url = webhook_url
        self._owns_http = http is None
        self._http = http if http is not None else httpx.Client(timeout=10.0)
        self.limiter = limiter if limiter is not None else RateLimiter(20, 60.0)
        self._sleep = sleep
        self._max_retries = max_rate_limit_retries

    def __repr__(self) -> str:
        return "WeComRobot(webhook_url=<hidden>)"

    def close(self) -> None:
        """Close the HTTP client if this object made it."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> WeComRobot:
        return self

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.close()

    def _post(self, payload: JsonObject) -> None:
        for attempt in range(self._max_retries + 1):
            wait = self.limiter.reserve()
            if wait > 0:
                self._sleep(wait)
            data = reply_json(post_safely(self._http, "WeCom", self._url, json=payload), "WeCom")
            code = _errcode(data)
            if code == 0:
                return
            error: WeComApiError = wecom_error(code, str(data.get("errmsg", "")))
            if error.kind is not FailureKind.RATE_LIMITED or attempt == self._max_retries:
                raise error
            _log.warning("WeCom robot rate-limited (errcode %d); backing off", code)
            self.limiter.penalize(RATE_LIMIT_BACKOFF)

    def send_text(
        self,
        content: str,
        mentioned_list: Sequence[str] = (),
        mentioned_mobile_list: Sequence[str] = (),
    ) -> int:
        """Send text (split at 2048 bytes); mentions ride on the first part. Returns parts sent."""
        if not content.strip():
            raise MessageInvalidError("text content must not be empty")
        for name in (*mentioned_list, *mentioned_mobile_list):
            if not name or name != name.strip():
                raise MessageInvalidError(f"mentions must be non-empty ids, got {name!r}")
        parts = split_utf8(content, TEXT_MAX_BYTES)
        for index, part in enumerate(parts):
            text: JsonObject = {"content": part}
            if index == 0 and mentioned_list:
                text["mentioned_list"] = list(mentioned_list)
            if index == 0 and mentioned_mobile_list:
                text["mentioned_mobile_list"] = list(mentioned_mobile_list)
            self._post({"msgtype": "text", "text": text})
        return len(parts)

    def send_markdown(self, content: str) -> int:
        """Send markdown (v1 subset, ``<@userid>`` mentions), split at 4096 bytes."""
        if not content.strip():
            raise MessageInvalidError("markdown content must not be empty")
        parts = split_utf8(content, ROBOT_MARKDOWN_MAX_BYTES)
        for part in parts:
            self._post({"msgtype": "markdown", "markdown": {"content": part}})
        return len(parts)

    def send_image(self, data: bytes) -> None:
        """Send a JPG/PNG image of at most 2 MB (base64 + md5 of the raw bytes)."""
        check_image(data, ROBOT_IMAGE_MAX_BYTES)
        image = {
            "base64": base64.b64encode(data).decode("ascii"),
            "md5": hashlib.md5(data, usedforsecurity=False).hexdigest(),
        }
        self._post({"msgtype": "image", "image": image})

    def send_news(self, articles: Sequence[NewsArticle]) -> None:
        """Send 1 to 8 news articles."""
        self._post({"msgtype": "news", "news": news_payload(articles)})
