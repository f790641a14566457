"""The WeCom callback endpoint: verify, decrypt, answer passively or later via the outbox."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response

from clawfed.chat.callback import handle_callback, handle_url_verification, passive_text_reply
from clawfed.chat.channel import OutgoingMessage
from clawfed.chat.errors import (
    CallbackError,
    ChatError,
    InvalidSignatureError,
    MalformedCallbackError,
    MalformedXmlError,
    ReceiveIdMismatchError,
    ReplayedMessageError,
    StaleTimestampError,
)
from clawfed.chat.nlu import Lang, default_parser, detect_lang
from clawfed.chat.outbox import Outbox
from clawfed.chat.service.access import AccessControl, wecom_profile_lookup
from clawfed.chat.service.answers import Answerer
from clawfed.chat.service.config import ChatConfig, WeComAppSettings
from clawfed.chat.service.regional import RegionalAnswers
from clawfed.chat.service.replies import Answer, ChartAnswer, TextAnswer, ack
from clawfed.chat.service.store import ChatStore
from clawfed.chat.service.views import t
from clawfed.chat.wecom_api import WeComClient
from clawfed.chat.wecom_crypto import ReplayGuard, WeComCrypto
from clawfed.chat.wecom_messages import TEXT_MAX_BYTES
from clawfed.core.errors import ClawfedError

_log = logging.getLogger(__name__)
_T = TypeVar("_T")

PASSIVE_BUDGET_S = 3.5
"""How long an answer may take before the reply goes out later (WeCom waits 5 s)."""

_REASONS: tuple[tuple[type[CallbackError], str], ...] = (
    (InvalidSignatureError, "invalid signature"),
    (StaleTimestampError, "stale timestamp"),
    (ReceiveIdMismatchError, "wrong receive id"),
    (MalformedXmlError, "malformed callback"),
    (MalformedCallbackError, "malformed callback"),
)


def _refusal(path: str, exc: CallbackError) -> PlainTextResponse:
    reason = next((text for kind, text in _REASONS if isinstance(exc, kind)), "cannot decrypt")
    _log.warning("WeCom callback on %s refused (%s): %s", path, reason, exc)
    return PlainTextResponse(reason, status_code=400)


class ChatRuntime:
    """The chat app's background work: answers and charts that are sent later.

    Parameters
    ----------
    outbox
        Where late answers are queued.
    workers
        Threads answering questions and drawing charts.
    """

    def __init__(self, outbox: Outbox, workers: int = 2) -> None:
        self.outbox = outbox
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="chat-answer")
        self._pending: set[Future[Any]] = set()
        self._holds = 0
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._closers: list[Callable[[], None]] = []

    def on_close(self, fn: Callable[[], None]) -> None:
        """Call ``fn`` when the runtime closes (e.g. to close an HTTP client)."""
        self._closers.append(fn)

    def submit(self, fn: Callable[..., _T], *args: Any) -> Future[_T]:
        """Run ``fn(*args)`` on a worker thread."""
        try:
            future = self._pool.submit(fn, *args)
        except RuntimeError as exc:  # the pool was shut down by close()
            raise ChatError("the chat runtime is closed; no more answers are sent") from exc
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._done)
        return future

    def _done(self, future: Future[Any]) -> None:
        with self._idle:
            self._pending.discard(future)
            self._idle.notify_all()

    def hold(self) -> None:
        """Count a piece of work that will be submitted later (see :meth:`release`)."""
        with self._lock:
            self._holds += 1

    def release(self) -> None:
        """The held work was submitted (or dropped)."""
        with self._idle:
            self._holds -= 1
            self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no background work is left; True if that happened within ``timeout`` s."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._pending and not self._holds, timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Finish the work in progress (at most ``timeout`` s), drop what has not started."""
        self.wait_idle(timeout)
        self._pool.shutdown(wait=False, cancel_futures=True)
        closers, self._closers = self._closers, []
        for fn in closers:
            fn()

    # ---- late delivery ----------------------------------------------------------------
    def send_later(self, channel: str, user: str, answer: Answer) -> None:
        """Queue a text answer, or draw a chart answer and queue the image with its caption."""
        if isinstance(answer, TextAnswer):
            self.submit(self.queue_text, channel, user, answer.text)
        else:
            self.submit(self._draw, channel, user, answer)

    def queue_text(self, channel: str, user: str, text: str) -> None:
        """Queue a text message to ``user`` (errors are logged)."""
        try:
            self.outbox.enqueue(channel, OutgoingMessage.text_message(text), user)
        except ClawfedError as exc:
            _log.error("chat: cannot queue an answer for %s on %s: %s", user, channel, exc)

    def _draw(self, channel: str, user: str, answer: ChartAnswer) -> None:
        try:
            png = answer.chart.render()
        except ClawfedError as exc:
            _log.error("chat: chart for %s failed: %s", user, exc)
            self.queue_text(
                channel, user, t(answer.lang, f"图表生成失败：{exc}", f"Chart failed: {exc}")
            )
            return
        except Exception:
            _log.exception("chat: chart for %s failed", user)
            failed = t(answer.lang, "图表生成失败（内部错误，已记录）", "Chart failed (logged)")
            self.queue_text(channel, user, failed)
            return
        try:
            self.outbox.enqueue(channel, OutgoingMessage.image_message(png, answer.caption), user)
        except ClawfedError as exc:
            _log.error("chat: cannot queue a chart for %s on %s: %s", user, channel, exc)


def _add_callback(
    app: FastAPI,
    name: str,
    settings: WeComAppSettings,
    answerer: Answerer,
    runtime: ChatRuntime,
    clock: Callable[[], float],
    budget: float,
) -> None:
    crypto = WeComCrypto(
        settings.token.get_secret_value(),
        settings.encoding_aes_key.get_secret_value(),
        settings.corp_id,
    )
    guard = ReplayGuard(clock=clock)
    path = settings.callback_path

    async def verify(request: Request) -> Response:
        try:
            plain = handle_url_verification(crypto, guard, dict(request.query_params))
        except CallbackError as exc:
            return _refusal(path, exc)
        return PlainTextResponse(plain)

    async def receive(request: Request) -> Response:
        params = dict(request.query_params)
        try:
            message = handle_callback(crypto, guard, params, await request.body())
        except ReplayedMessageError:
            _log.info("WeCom callback on %s: a retried message, already answered", path)
            return Response(status_code=200)
        except CallbackError as exc:
            return _refusal(path, exc)
        if not message.is_text or not message.content.strip():
            return Response(status_code=200)
        user, lang = message.from_user, detect_lang(message.content)
        future = runtime.submit(answerer.reply, user, message.content)
        try:
            answer = await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), budget)
        except TimeoutError:
            runtime.hold()
            future.add_done_callback(lambda f: _late(f, runtime, name, user, lang))
            return Response(status_code=200)
        except Exception:
            _log.exception("chat: answering %s failed", user)
            answer = TextAnswer(
                t(lang, "抱歉，出错了，已记录。", "Sorry, something failed (logged).")
            )
        text = answer.ack if isinstance(answer, ChartAnswer) else answer.text
        if isinstance(answer, ChartAnswer):
            runtime.send_later(name, user, answer)
        elif len(text.encode("utf-8")) > TEXT_MAX_BYTES:
            runtime.send_later(name, user, answer)
            return Response(status_code=200)
        reply = passive_text_reply(crypto, user, text, params["nonce"], int(clock()))
        return Response(reply, media_type="application/xml")

    app.add_api_route(path, verify, methods=["GET"], include_in_schema=False)
    app.add_api_route(path, receive, methods=["POST"], include_in_schema=False)


def _late(
    future: Future[Answer], runtime: ChatRuntime, channel: str, user: str, lang: Lang
) -> None:
    """Send an answer that missed the passive-reply window through the outbox."""
    try:
        try:
            answer = future.result()
        except Exception:
            _log.exception("chat: a late answer for %s failed", user)
            failed = t(lang, "抱歉，出错了，已记录。", "Sorry, something failed (logged).")
            answer = TextAnswer(failed)
        if isinstance(answer, ChartAnswer):
            runtime.submit(runtime.queue_text, channel, user, ack(lang))
        runtime.send_later(channel, user, answer)
    except ClawfedError as exc:
        _log.error("chat: a late answer for %s was not sent: %s", user, exc)
    finally:
        runtime.release()


def create_chat_app(
    config: ChatConfig,
    store: ChatStore,
    outbox: Outbox,
    *,
    answerer: Answerer | None = None,
    clock: Callable[[], float] = time.time,
    passive_budget_s: float = PASSIVE_BUDGET_S,
    workers: int = 2,
) -> FastAPI:
    """Build the chat HTTP app: one WeCom callback route per ``wecom_app`` channel.

    ``GET path`` answers WeCom's URL check; ``POST path`` takes encrypted messages, answers
    commands and questions with a passive encrypted reply when the answer is ready within
    ``passive_budget_s``, and otherwise (charts, slow or long answers) through the outbox
    as application messages to the sender. A retried MsgId gets an empty 200; a callback
    that fails verification gets 400 with a short reason. ``app.state.chat`` is the
    :class:`ChatRuntime`; call its ``close()`` when the server stops (also done by the
    app's lifespan when the server runs it).
    """
    runtime = ChatRuntime(outbox, workers)
    fixed = config.today
    responder = answerer or Answerer(
        store,
        config.zone,
        today=None if fixed is None else (lambda: fixed),
        access=access_control(config, store, runtime),
        regional=RegionalAnswers(store, config.region_query),
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await asyncio.to_thread(runtime.close)

    app = FastAPI(
        title="clawfed chat", openapi_url=None, docs_url=None, redoc_url=None, lifespan=lifespan
    )
    app.state.chat = runtime
    app.state.answerer = responder
    for name, settings in config.app_channels().items():
        _add_callback(app, name, settings, responder, runtime, clock, passive_budget_s)
    runtime.submit(default_parser)  # load jieba now, not during the first 5-second window
    return app


def access_control(
    config: ChatConfig, store: ChatStore, runtime: ChatRuntime
) -> AccessControl | None:
    """The access control ``config.access`` asks for (None without an ``access`` section).

    Senders unknown to the store and the config are looked up with WeCom's ``user/get``
    through the first WeCom application channel (when ``access.lookup`` is on).
    """
    if config.access is None:
        return None
    lookup = None
    apps = list(config.app_channels().values())
    if apps and config.access.lookup:
        first = apps[0]
        client = WeComClient(
            first.api_base, first.corp_id, first.corp_secret.get_secret_value(), first.agent_id
        )
        lookup = wecom_profile_lookup(client)
        runtime.on_close(client.close)
    return AccessControl(config.access, store.db, lookup=lookup)


def chat_answerer(app: FastAPI) -> Answerer:
    """The :class:`Answerer` of an app made by :func:`create_chat_app`."""
    answerer = app.state.answerer
    if not isinstance(answerer, Answerer):
        raise TypeError("this app was not made by create_chat_app")
    return answerer


def chat_runtime(app: FastAPI) -> ChatRuntime:
    """The :class:`ChatRuntime` of an app made by :func:`create_chat_app`."""
    runtime = app.state.chat
    if not isinstance(runtime, ChatRuntime):
        raise TypeError("this app was not made by create_chat_app")
    return runtime
