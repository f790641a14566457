"""A local WeCom (企业微信) for tests and the demo: the same HTTP endpoints, shapes and errcodes."""

from __future__ import annotations

import json
import secrets
import string
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from clawfed.chat.fake_wecom_callbacks import CallbackDelivery, CallbackDriver, UrlVerification
from clawfed.chat.fake_wecom_rules import (
    Refusal,
    check_app_message,
    check_robot_message,
    parse_multipart,
)
from clawfed.chat.local_server import RunningServer, start_server
from clawfed.chat.wecom_crypto import WeComCrypto
from clawfed.chat.wecom_messages import MIN_MEDIA_BYTES, image_mime

MEDIA_LIFETIME = 3 * 24 * 3600.0
MEDIA_IMAGE_MAX_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True)
class TranscriptEntry:
    """One request the fake received, and the errcode it answered."""

    seq: int
    time: float
    method: str
    path: str
    params: dict[str, str]
    body: dict[str, Any] | None
    errcode: int
    dropped_users: tuple[str, ...] = ()


def _reply(code: int, msg: str = "ok", **extra: Any) -> dict[str, Any]:
    if code:
        msg = (
            f"{msg}, hint: [{secrets.token_hex(8)}], from ip: 127.0.0.1, "
            f"more info at https://open.work.weixin.qq.com/devtool/query?e={code}"
        )
    return {"errcode": code, "errmsg": msg, **extra}


class FakeWeCom:
    """State and behaviour of a fake WeCom corp with one application and some robots.

    Parameters
    ----------
    corp_id, corp_secret, agent_id
        The only credentials ``gettoken`` accepts, and the app's AgentId.
    robot_keys
        Webhook keys of existing group robots; any other key answers 93000.
    users, parties, tags
        Known recipients; others are reported as invalid (all invalid -> 81013).
    token_ttl
        ``expires_in`` of issued tokens (seconds).
    robot_limit, robot_period
        Robot rate limit (20 per 60 s) beyond which ``webhook/send`` answers 45009.
    member_limit
        App messages per member per minute; beyond it WeCom drops them silently.
    callback_token, encoding_aes_key
        Callback settings used to sign and encrypt ``post_user_message`` (key generated if None).
    clock
        Wall-clock seconds for expiry, windows and CreateTime (inject a fake clock in tests).
    profiles
        What ``user/get`` answers per user id (``name``, ``department`` ids, ``position``,
        ``is_leader_in_dept``); users without a profile get a minimal one.
    departments
        What ``department/list`` answers: WeCom department id -> name.
    """

    def __init__(
        self,
        *,
        corp_id: str = "wwfakecorp0000001",
        corp_secret: str = "fake-app-secret",
        agent_id: int = 1000002,
        robot_keys: Iterable[str] = ("fake-robot-key",),
        users: Iterable[str] = ("zhangsan", "lisi", "wangwu"),
        parties: Iterable[int] = (1, 2),
        tags: Iterable[int] = (1,),
        token_ttl: int = 7200,
        robot_limit: int = 20,
        robot_period: float = 60.0,
        member_limit: int = 30,
        callback_token: str = "fakeCallbackToken",
        encoding_aes_key: str | None = None,
        clock: Callable[[], float] = time.time,
        profiles: Mapping[str, Mapping[str, Any]] | None = None,
        departments: Mapping[int, str] | None = None,
    ) -> None:
        self.corp_id, self.corp_secret, self.agent_id = corp_id, corp_secret, agent_id
        self.profiles = {u: dict(p) for u, p in (profiles or {}).items()}
        self.departments = dict(departments or {1: "总部"})
        self.robot_keys = frozenset(robot_keys)
        self.users, self.parties = frozenset(users), frozenset(str(p) for p in parties)
        self.tags = frozenset(str(t) for t in tags)
        self.token_ttl = token_ttl
        self.robot_limit, self.robot_period = robot_limit, robot_period
        self.member_limit = member_limit
        self.clock = clock
        self.callback_token = callback_token
        self.encoding_aes_key = encoding_aes_key or "".join(
            secrets.choice(string.ascii_letters + string.digits) for _ in range(43)
        )
        self.crypto = WeComCrypto(callback_token, self.encoding_aes_key, corp_id)
        self._lock = threading.Lock()
        self._tokens: dict[str, float] = {}
        self._media: dict[str, tuple[bytes, float]] = {}
        self._robot_sends: dict[str, deque[float]] = {}
        self._member_sends: dict[str, deque[float]] = {}
        self._transcript: list[TranscriptEntry] = []
        self._counts: Counter[str] = Counter()
        self._driver = CallbackDriver(self.crypto, corp_id, agent_id, clock, self._record)

    # -- inspection and control ------------------------------------------------------------

    def transcript(self, path: str | None = None) -> list[TranscriptEntry]:
        """Everything received so far (optionally only requests to ``path``), oldest first."""
        with self._lock:
            return [e for e in self._transcript if path is None or e.path == path]

    def count(self, path: str) -> int:
        """How many requests reached ``path`` (e.g. ``/cgi-bin/gettoken``)."""
        with self._lock:
            return self._counts[path]

    def accepted(self, path: str) -> list[dict[str, Any]]:
        """Bodies of the requests to ``path`` that were answered with errcode 0."""
        return [e.body for e in self.transcript(path) if e.errcode == 0 and e.body is not None]

    def media(self, media_id: str) -> bytes:
        """The bytes of an uploaded media (KeyError when unknown)."""
        with self._lock:
            return self._media[media_id][0]

    def expire_tokens(self) -> None:
        """Make every issued access_token expired (later calls answer 42001)."""
        with self._lock:
            now = self.clock()
            self._tokens = dict.fromkeys(self._tokens, now)

    def invalidate_tokens(self) -> None:
        """Forget every issued access_token (later calls answer 40014)."""
        with self._lock:
            self._tokens.clear()

    def _record(
        self,
        method: str,
        path: str,
        params: dict[str, str],
        body: dict[str, Any] | None,
        errcode: int,
        dropped: tuple[str, ...] = (),
    ) -> None:
        with self._lock:
            self._counts[path] += 1
            entry = TranscriptEntry(
                len(self._transcript), self.clock(), method, path, params, body, errcode, dropped
            )
            self._transcript.append(entry)

    # -- endpoints -------------------------------------------------------------------------

    def gettoken(self, params: dict[str, str]) -> dict[str, Any]:
        """``GET /cgi-bin/gettoken``."""
        corpid, secret = params.get("corpid", ""), params.get("corpsecret", "")
        if not corpid:
            reply = _reply(41002, "corpid missing")
        elif corpid != self.corp_id:
            reply = _reply(40013, "invalid corpid")
        elif not secret:
            reply = _reply(41004, "corpsecret missing")
        elif secret != self.corp_secret:
            reply = _reply(40001, "invalid credential")
        else:
            token = secrets.token_urlsafe(48)
            with self._lock:
                self._tokens[token] = self.clock() + self.token_ttl
            reply = _reply(0, access_token=token, expires_in=self.token_ttl)
        self._record("GET", "/cgi-bin/gettoken", params, None, reply["errcode"])
        return reply

    def _token_refusal(self, params: dict[str, str]) -> dict[str, Any] | None:
        token = params.get("access_token", "")
        if not token:
            return _reply(41001, "access_token missing")
        with self._lock:
            expires = self._tokens.get(token)
        if expires is None:
            return _reply(40014, "invalid access_token")
        if self.clock() >= expires:
            return _reply(42001, "access_token expired")
        return None

    def _deliver(self, body: dict[str, Any]) -> tuple[dict[str, Any], tuple[str, ...]]:
        users = [u for u in str(body.get("touser", "")).split("|") if u]
        parties = [p for p in str(body.get("toparty", "")).split("|") if p]
        tags = [t for t in str(body.get("totag", "")).split("|") if t]
        targets = sorted(self.users) if users == ["@all"] else [u for u in users if u in self.users]
        bad_users = [] if users == ["@all"] else [u for u in users if u not in self.users]
        bad_parties = [p for p in parties if p not in self.parties]
        bad_tags = [t for t in tags if t not in self.tags]
        if not targets and len(bad_parties) == len(parties) and len(bad_tags) == len(tags):
            return _reply(81013, "user & party & tag all invalid"), ()
        dropped: list[str] = []
        now = self.clock()
        with self._lock:
            for user in targets:
                window = self._member_sends.setdefault(user, deque())
                while window and window[0] <= now - 60.0:
                    window.popleft()
                if len(window) >= self.member_limit:
                    dropped.append(user)  # WeCom drops these silently: no error for the caller
                else:
                    window.append(now)
        reply = _reply(
            0,
            invaliduser="|".join(bad_users),
            invalidparty="|".join(bad_parties),
            invalidtag="|".join(bad_tags),
            msgid=secrets.token_hex(16),
        )
        return reply, tuple(dropped)

    def message_send(self, params: dict[str, str], raw: bytes) -> dict[str, Any]:
        """``POST /cgi-bin/message/send``."""
        body = _json_or_none(raw)
        dropped: tuple[str, ...] = ()
        reply = self._token_refusal(params)
        if reply is None:
            refusal = (
                Refusal(47001, "data format error")
                if body is None
                else check_app_message(body, self.agent_id)
            )
            if refusal is None and body is not None and body.get("msgtype") == "image":
                refusal = self._media_refusal(str(body["image"]["media_id"]))
            if refusal is not None:
                reply = _reply(refusal.errcode, refusal.errmsg)
            else:
                assert body is not None
                reply, dropped = self._deliver(body)
        self._record("POST", "/cgi-bin/message/send", params, body, reply["errcode"], dropped)
        return reply

    def _media_refusal(self, media_id: str) -> Refusal | None:
        with self._lock:
            item = self._media.get(media_id)
        if item is None or self.clock() - item[1] > MEDIA_LIFETIME:
            return Refusal(40007, "invalid media_id")
        return None

    def media_upload(self, params: dict[str, str], content_type: str, raw: bytes) -> dict[str, Any]:
        """``POST /cgi-bin/media/upload?type=image|voice|video|file`` (multipart ``media``)."""
        reply = self._token_refusal(params)
        media_type = params.get("type", "")
        files = [f for f in parse_multipart(content_type, raw) if f.name == "media"]
        info: dict[str, Any] | None = None
        if files:
            info = {"filename": files[0].filename, "size": len(files[0].data), "type": media_type}
        if reply is None:
            if media_type not in ("image", "voice", "video", "file"):
                reply = _reply(40004, f"invalid media type {media_type!r}")
            elif not files or not files[0].data:
                reply = _reply(44001, "empty media data")
            elif len(files[0].data) < MIN_MEDIA_BYTES:
                reply = _reply(40006, "invalid file size")
            elif media_type == "image" and image_mime(files[0].data) is None:
                reply = _reply(40005, "invalid file type")
            elif media_type == "image" and len(files[0].data) > MEDIA_IMAGE_MAX_BYTES:
                reply = _reply(40006, "invalid file size")
            else:
                media_id = "3" + secrets.token_urlsafe(40)
                now = self.clock()
                with self._lock:
                    self._media[media_id] = (files[0].data, now)
                reply = _reply(0, type=media_type, media_id=media_id, created_at=str(int(now)))
        self._record("POST", "/cgi-bin/media/upload", params, info, reply["errcode"])
        return reply

    def user_get(self, params: dict[str, str]) -> dict[str, Any]:
        """``GET /cgi-bin/user/get?userid=U``: name, departments, position, leader flags."""
        reply = self._token_refusal(params)
        userid = params.get("userid", "")
        if reply is None:
            if not userid:
                reply = _reply(41009, "missing userid")
            elif userid not in self.users and userid not in self.profiles:
                reply = _reply(60111, "userid not found")
            else:
                profile: dict[str, Any] = {"name": userid, "department": [], "position": ""}
                profile |= self.profiles.get(userid, {})
                reply = _reply(0, userid=userid, **profile)
        self._record("GET", "/cgi-bin/user/get", params, None, reply["errcode"])
        return reply

    def department_list(self, params: dict[str, str]) -> dict[str, Any]:
        """``GET /cgi-bin/department/list``: every department's id and name."""
        reply = self._token_refusal(params)
        if reply is None:
            listed = [
                {"id": i, "name": n, "parentid": 0} for i, n in sorted(self.departments.items())
            ]
            reply = _reply(0, department=listed)
        self._record("GET", "/cgi-bin/department/list", params, None, reply["errcode"])
        return reply

    def webhook_send(self, params: dict[str, str], raw: bytes) -> dict[str, Any]:
        """``POST /cgi-bin/webhook/send?key=KEY``."""
        key, body = params.get("key", ""), _json_or_none(raw)
        if key not in self.robot_keys:
            reply = _reply(93000, "invalid webhook url")
        elif body is None:
            reply = _reply(40058, "invalid Request Parameter: body is not JSON")
        else:
            now = self.clock()
            with self._lock:
                window = self._robot_sends.setdefault(key, deque())
                while window and window[0] <= now - self.robot_period:
                    window.popleft()
                limited = len(window) >= self.robot_limit
                if not limited:
                    window.append(now)
            refusal = Refusal(45009, "api freq out of limit") if limited else None
            refusal = refusal or check_robot_message(body)
            reply = _reply(0) if refusal is None else _reply(refusal.errcode, refusal.errmsg)
        self._record("POST", "/cgi-bin/webhook/send", params, body, reply["errcode"])
        return reply

    # -- callbacks -------------------------------------------------------------------------

    def post_user_message(
        self, callback_url: str, from_user: str, text: str, *, msg_id: int | None = None
    ) -> CallbackDelivery:
        """POST an encrypted text message from ``from_user`` to ``callback_url`` as WeCom does.

        Retries (same MsgId) up to 3 attempts on a timeout (5 s) or a non-200 answer, and
        decrypts the passive reply when the endpoint sends one (a reply that is not a valid
        signed envelope raises the matching ``CallbackError``).
        """
        return self._driver.post_text(callback_url, from_user, text, msg_id=msg_id)

    def verify_callback_url(self, callback_url: str) -> UrlVerification:
        """Run WeCom's URL check against ``callback_url`` (``.ok`` tells if it passed)."""
        return self._driver.verify_url(callback_url)

    def build_app(self) -> FastAPI:
        """The FastAPI app serving this fake's endpoints under ``/cgi-bin``."""
        app = FastAPI(title="fake WeCom", openapi_url=None, docs_url=None, redoc_url=None)

        @app.get("/cgi-bin/gettoken")
        async def gettoken(request: Request) -> JSONResponse:
            return JSONResponse(self.gettoken(dict(request.query_params)))

        @app.post("/cgi-bin/message/send")
        async def message_send(request: Request) -> JSONResponse:
            return JSONResponse(self.message_send(dict(request.query_params), await request.body()))

        @app.post("/cgi-bin/media/upload")
        async def media_upload(request: Request) -> JSONResponse:
            content_type = request.headers.get("content-type", "")
            raw = await request.body()
            return JSONResponse(self.media_upload(dict(request.query_params), content_type, raw))

        @app.get("/cgi-bin/user/get")
        async def user_get(request: Request) -> JSONResponse:
            return JSONResponse(self.user_get(dict(request.query_params)))

        @app.get("/cgi-bin/department/list")
        async def department_list(request: Request) -> JSONResponse:
            return JSONResponse(self.department_list(dict(request.query_params)))

        @app.post("/cgi-bin/webhook/send")
        async def webhook_send(request: Request) -> JSONResponse:
            return JSONResponse(self.webhook_send(dict(request.query_params), await request.body()))

        return app


def _json_or_none(raw: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


class FakeWeComServer(RunningServer):
    """A running fake WeCom: ``fake`` is its state, ``api_base`` the root to give clients."""

    def __init__(self, fake: FakeWeCom, host: str, port: int) -> None:
        super().__init__(*start_server(fake.build_app(), host, port))
        self.fake = fake
        self.api_base = f"{self.url}/cgi-bin"

    def robot_url(self, key: str | None = None) -> str:
        """The ``webhook/send`` URL of a robot (the fake's first key by default)."""
        return f"{self.api_base}/webhook/send?key={key or sorted(self.fake.robot_keys)[0]}"


def serve_fake_wecom(
    host: str = "127.0.0.1", port: int = 0, *, fake: FakeWeCom | None = None
) -> FakeWeComServer:
    """Run a fake WeCom with uvicorn in a background thread; ``stop()`` ends it cleanly.

    Parameters
    ----------
    host, port
        Where to listen (port 0: a free ephemeral port; see ``.url`` / ``.api_base``).
    fake
        The state to serve (a default ``FakeWeCom()`` when omitted).
    """
    return FakeWeComServer(fake if fake is not None else FakeWeCom(), host, port)
