"""The chat layer of a running coordinator in one object: channels, outbox, notifier, app."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import httpx

from clawfed.chat.local_server import RunningServer, serve_app
from clawfed.chat.outbox import Outbox
from clawfed.chat.service.app import chat_answerer, chat_runtime, create_chat_app
from clawfed.chat.service.channels import ConfiguredChannels, rate_windows
from clawfed.chat.service.config import ChatConfig
from clawfed.chat.service.notifier import Notifier
from clawfed.chat.service.regional import RegionAsk
from clawfed.chat.service.store import ChatStore
from clawfed.governance._common import now_utc
from clawfed.governance.db import Database

_log = logging.getLogger(__name__)


class ChatService:
    """Chat for one coordinator: notifications out, questions in.

    Build it after the database is migrated, call :meth:`start` when the coordinator
    starts, pass every ``Coordinator.events(kind, data)`` to :meth:`handle`, and call
    :meth:`stop` first thing when the coordinator stops (so the nodes' disconnects at
    shutdown are not announced as lost nodes).

    Parameters
    ----------
    config
        The ``chat:`` section.
    db
        The coordinator's (migrated) database; the outbox lives in it.
    http
        HTTP client for the chat services (made and owned when omitted).
    clock
        Timezone-aware "now" for the outbox.
    """

    def __init__(
        self,
        config: ChatConfig,
        db: Database,
        *,
        http: httpx.Client | None = None,
        clock: Callable[[], datetime] = now_utc,
    ) -> None:
        self.config = config
        self._stopping = threading.Event()
        self.channels = ConfiguredChannels(config, http, sleep=self._pause)
        self.outbox = Outbox(db, self.channels, limits=rate_windows(config), clock=clock)
        self.store = ChatStore(db)
        self.notifier = Notifier(config, self.outbox, store=self.store)
        self.app = create_chat_app(config, self.store, self.outbox)
        self._server: RunningServer | None = None

    def _pause(self, seconds: float) -> None:
        """A channel's wait for a rate-limit slot, cut short when the service stops."""
        self._stopping.wait(seconds)

    def attach_query(self, ask: RegionAsk) -> None:
        """Let chat answer regional questions with federated queries run by ``ask``."""
        chat_answerer(self.app).regional.ask = ask

    @property
    def callback_url(self) -> str | None:
        """Full URL of the first WeCom app's callback endpoint while it is serving."""
        apps = self.config.app_channels()
        if self._server is None or not apps:
            return None
        return self._server.url + next(iter(apps.values())).callback_path

    def start(self) -> str | None:
        """Start the outbox sender and, when a WeCom app is configured, the callback server.

        Returns the callback server's base URL (None when no callback is configured).
        """
        self._stopping.clear()
        self.outbox.start()
        if not self.config.app_channels():
            return None
        self._server = serve_app(self.app, self.config.http_host, self.config.http_port)
        for name, app in self.config.app_channels().items():
            _log.info("WeCom callback of %s at %s%s", name, self._server.url, app.callback_path)
        return self._server.url

    def handle(self, kind: str, data: Mapping[str, Any]) -> None:
        """Queue the notices of one coordinator event (never raises)."""
        self.notifier.handle(kind, data)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop notifying, serving, answering and sending (bounded waits)."""
        self.notifier.close()
        self._stopping.set()
        try:
            if self._server is not None:
                self._server.stop(timeout)
                self._server = None
            chat_runtime(self.app).close(timeout)
            self.outbox.stop(timeout)
        finally:
            self.channels.close()
