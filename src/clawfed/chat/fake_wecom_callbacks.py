"""The fake WeCom's callback side: posting encrypted user messages and URL checks to an app."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from clawfed.chat.wecom_crypto import WeComCrypto
from clawfed.chat.wecom_xml import build_flat_xml, parse_flat_xml, require_field

CALLBACK_TIMEOUT = 5.0
"""WeCom waits this long for an answer before it retries."""
CALLBACK_ATTEMPTS = 3
"""WeCom tries a callback at most this many times (same MsgId)."""


class Recorder(Protocol):
    """Where the driver records what it did (the fake's transcript)."""

    def __call__(
        self,
        method: str,
        path: str,
        params: dict[str, str],
        body: dict[str, Any] | None,
        errcode: int,
    ) -> None: ...


@dataclass(frozen=True)
class CallbackDelivery:
    """Outcome of posting one user message to a callback URL."""

    msg_id: int
    attempts: int
    status_code: int
    body: str
    reply_xml: str | None

    @property
    def delivered(self) -> bool:
        """Whether the endpoint answered HTTP 200 (empty body = "no passive reply")."""
        return self.status_code == 200

    @property
    def reply_fields(self) -> dict[str, str]:
        """Fields of the decrypted passive reply ({} when the endpoint sent none)."""
        return parse_flat_xml(self.reply_xml) if self.reply_xml else {}


@dataclass(frozen=True)
class UrlVerification:
    """Outcome of WeCom's URL check: what it expected back and what it got."""

    expected: str
    answered: str
    status_code: int

    @property
    def ok(self) -> bool:
        """Whether the endpoint echoed exactly the decrypted ``echostr`` with HTTP 200."""
        return self.status_code == 200 and self.answered == self.expected


class CallbackDriver:
    """Acts like WeCom towards an application's callback URL."""

    def __init__(
        self,
        crypto: WeComCrypto,
        corp_id: str,
        agent_id: int,
        clock: Callable[[], float],
        record: Recorder,
        timeout: float = CALLBACK_TIMEOUT,
        attempts: int = CALLBACK_ATTEMPTS,
    ) -> None:
        self._crypto = crypto
        self._corp_id = corp_id
        self._agent_id = agent_id
        self._clock = clock
        self._record = record
        self._timeout = timeout
        self._attempts = attempts

    def _signed_params(self, encrypted: str) -> dict[str, str]:
        timestamp = str(int(self._clock()))
        nonce = str(secrets.randbelow(10**10))
        signature = self._crypto.signature(timestamp, nonce, encrypted)
        return {"msg_signature": signature, "timestamp": timestamp, "nonce": nonce}

    def _open_reply(self, body: str) -> str:
        envelope = parse_flat_xml(body)
        encrypted = require_field(envelope, "Encrypt")
        self._crypto.check_signature(
            require_field(envelope, "MsgSignature"),
            require_field(envelope, "TimeStamp"),
            require_field(envelope, "Nonce"),
            encrypted,
        )
        return self._crypto.decrypt(encrypted)

    def post_text(
        self, url: str, from_user: str, text: str, *, msg_id: int | None = None
    ) -> CallbackDelivery:
        """Encrypt and POST a text message from ``from_user``; retry like WeCom does."""
        mid = msg_id if msg_id is not None else secrets.randbits(63)
        plain = build_flat_xml(
            {
                "ToUserName": self._corp_id,
                "FromUserName": from_user,
                "CreateTime": int(self._clock()),
                "MsgType": "text",
                "Content": text,
                "MsgId": mid,
                "AgentID": self._agent_id,
            }
        )
        body = self._crypto.encrypt_callback(plain, self._corp_id, self._agent_id)
        encrypted = require_field(parse_flat_xml(body), "Encrypt")
        status, answer, attempts = 0, "", 0
        with httpx.Client(timeout=self._timeout) as http:
            while attempts < self._attempts:
                attempts += 1
                try:
                    response = http.post(
                        url,
                        params=self._signed_params(encrypted),
                        content=body.encode("utf-8"),
                        headers={"Content-Type": "text/xml; charset=utf-8"},
                    )
                except httpx.HTTPError:
                    status, answer = 0, ""
                    continue
                status, answer = response.status_code, response.text
                if status == 200:
                    break
        reply = self._open_reply(answer) if status == 200 and answer.strip() else None
        delivery = CallbackDelivery(mid, attempts, status, answer, reply)
        self._record(
            "CALLBACK",
            "callback",
            {"url": url},
            {"from_user": from_user, "content": text, "msg_id": mid, "reply": reply},
            0 if delivery.delivered else -1,
        )
        return delivery

    def verify_url(self, url: str) -> UrlVerification:
        """Send WeCom's URL check (GET with an encrypted ``echostr``) and report the answer."""
        expected = str(secrets.randbelow(10**19))
        echostr = self._crypto.encrypt(expected)
        params = {**self._signed_params(echostr), "echostr": echostr}
        with httpx.Client(timeout=self._timeout) as http:
            response = http.get(url, params=params)
        result = UrlVerification(expected, response.text, response.status_code)
        self._record("CALLBACK", "url_check", {"url": url}, None, 0 if result.ok else -1)
        return result
