"""The node's local inference endpoint: ``POST /predict`` redacts a message and returns its intent.

A department runs it next to its node (``clawfed predict-serve --model FILE``), bound to
127.0.0.1 only. Each request's text is redacted first (``privacy.pii.redact``: the model
never sees personal data, exactly as in training), then classified. Errors are RFC 9457
problem details: a body that is not JSON is a 400, an empty or missing ``text`` a 422,
each naming what was wrong. Nothing of a request's text is logged.
"""

from __future__ import annotations

import ipaddress
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from clawfed.core import ConfigError
from clawfed.learning.text_classifier import (
    TextModelSettings,
    TextTrainer,
    encode_texts,
    load_text_model,
)
from clawfed.privacy.pii import redact
from clawfed.privacy.pii_ner import warm_up

#: Longest message accepted, in characters.
MAX_TEXT = 2000


class PredictRequest(BaseModel):
    """A message to classify."""

    model_config = ConfigDict(extra="forbid")

    text: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TEXT)
    ]


class PredictResponse(BaseModel):
    """The intent, its probability, and the message as the model saw it (redacted)."""

    intent: str
    probability: float = Field(ge=0.0, le=1.0)
    redacted: str


@dataclass(frozen=True)
class Prediction:
    """What ``IntentPredictor.predict`` returns."""

    intent: str
    probability: float
    redacted: str


class IntentPredictor:
    """A loaded text classifier that redacts each message before classifying it."""

    def __init__(self, trainer: TextTrainer) -> None:
        self._trainer = trainer
        self._settings: TextModelSettings = trainer.model.settings
        self._lock = threading.Lock()

    @classmethod
    def from_file(cls, path: Path, settings: TextModelSettings | None = None) -> IntentPredictor:
        """Load a saved text model (or a version file plus the job's ``settings``)."""
        return cls(load_text_model(path, settings))

    @property
    def classes(self) -> tuple[str, ...]:
        """The intents the model knows, in label order."""
        return self._settings.classes

    def predict(self, text: str) -> Prediction:
        """Redact ``text``, then return the most probable intent and its probability."""
        clean = redact(text).text
        ids = encode_texts([clean], self._settings)
        with self._lock:  # torch modules are not meant for concurrent forward passes
            probs = self._trainer.predict_proba(ids)[0]
        best = int(np.argmax(probs))
        return Prediction(self._settings.classes[best], float(probs[best]), clean)


def _problem(status: int, title: str, detail: str) -> JSONResponse:
    return JSONResponse(
        {"type": "about:blank", "title": title, "status": status, "detail": detail},
        status_code=status,
        media_type="application/problem+json",
    )


def create_app(predictor: IntentPredictor) -> FastAPI:
    """The FastAPI app: ``POST /predict`` and ``GET /health``."""
    app = FastAPI(title="clawfed node prediction", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return _problem(400, "Malformed JSON", "the request body is not valid JSON")
        parts = []
        for e in errors:
            where = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body"
            kind = e.get("type", "")
            if kind == "string_too_short":
                parts.append(f"{where} must not be empty")
            elif kind == "string_too_long":
                parts.append(f"{where} must be at most {MAX_TEXT} characters")
            elif kind == "missing":
                parts.append(f"{where} is required")
            elif kind == "extra_forbidden":
                parts.append(f"unknown field {where}")
            else:
                parts.append(f"{where}: {e.get('msg', 'invalid')}")
        return _problem(422, "Invalid request", "; ".join(parts) + ' (send {"text": "..."})')

    @app.get("/health")
    async def health() -> dict[str, object]:
        return {"status": "ok", "intents": list(predictor.classes)}

    @app.post("/predict", response_model=PredictResponse)
    def predict(body: PredictRequest) -> PredictResponse:
        p = predictor.predict(body.text)
        return PredictResponse(intent=p.intent, probability=p.probability, redacted=p.redacted)

    return app


def _loopback(host: str) -> str:
    try:
        loop = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loop = host == "localhost"
    if not loop:
        raise ConfigError(
            f"the prediction endpoint binds to a loopback address only (127.0.0.1), got {host!r}"
        )
    return host


class PredictServer:
    """``create_app`` served by uvicorn from a background thread on 127.0.0.1.

    Parameters
    ----------
    predictor
        The loaded model.
    port
        TCP port; 0 picks a free one (see ``port`` after ``start``).
    host
        A loopback address; anything else is refused.
    """

    def __init__(self, predictor: IntentPredictor, port: int = 0, host: str = "127.0.0.1") -> None:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ConfigError(f"port must be an integer in [0, 65535], got {port!r}")
        self._host = _loopback(host)
        self._port = port
        self._predictor = predictor
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    @property
    def url(self) -> str:
        """Base URL once started."""
        if self._sock is None:
            raise ConfigError("the prediction server is not started")
        host, port = self._sock.getsockname()[:2]
        return f"http://{host}:{port}"

    def start(self, timeout_s: float = 10.0) -> PredictServer:
        """Load the redaction model, bind, and serve until ``stop``; returns once it listens."""
        warm_up()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self._host, self._port))
        except OSError as exc:
            sock.close()
            raise ConfigError(f"cannot bind {self._host}:{self._port}: {exc.strerror}") from exc
        config = uvicorn.Config(
            create_app(self._predictor),
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="off",
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="clawfed-predict", daemon=True
        )
        self._server, self._thread, self._sock = server, thread, sock
        thread.start()
        deadline = time.monotonic() + timeout_s
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise ConfigError(f"prediction server on {self._host} did not start")
            time.sleep(0.01)
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop serving, wait for the thread, release the socket."""
        if self._server is not None and self._thread is not None and self._thread.is_alive():
            self._server.should_exit = True
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                self._server.force_exit = True
                self._thread.join(timeout_s)
        if self._sock is not None:
            self._sock.close()

    def wait(self) -> None:
        """Block until the server thread ends (``stop`` from another thread or a signal)."""
        if self._thread is not None:
            self._thread.join()


def settings_from_job(job_file: Path) -> TextModelSettings:
    """The text-classifier settings of a job file (its ``model.settings``).

    Raises
    ------
    ConfigError
        If the file is not a job or its model is not ``text_classifier``.
    """
    from clawfed.coordinator.jobspec import parse_job

    try:
        text = job_file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"job file {str(job_file)!r} cannot be read: {exc}") from exc
    spec = parse_job(text, source=str(job_file))
    if spec.model.name != "text_classifier":
        raise ConfigError(
            f"job file {str(job_file)!r} trains {spec.model.label}, not text_classifier"
        )
    return TextModelSettings.from_settings(dict(spec.model.settings))


def serve_until_stopped(
    model: Path, job: Path | None, port: int, on_ready: Callable[[str], None]
) -> None:
    """Load ``model`` (with ``job``'s settings for a bare version file), serve on 127.0.0.1
    until SIGINT or SIGTERM; ``on_ready`` gets the base URL once it listens."""
    settings = settings_from_job(job) if job is not None else None
    server = PredictServer(IntentPredictor.from_file(model, settings), port=port).start()
    stopped = threading.Event()

    def stop(_signum: int, _frame: object) -> None:
        stopped.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)
    on_ready(server.url)
    try:
        while not stopped.wait(0.5):
            pass
    finally:
        server.stop()
