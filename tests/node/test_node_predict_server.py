"""The node's ``POST /predict`` over real HTTP on 127.0.0.1: redacts, classifies, clear 4xx."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from clawfed.core import ConfigError
from clawfed.data.salesbot import INTENTS, make_messages
from clawfed.learning import FitConfig
from clawfed.learning.text_classifier import (
    TextModelSettings,
    TextTrainer,
    build_text_classifier,
    save_text_model,
    text_train_data,
)
from clawfed.node.predict_server import IntentPredictor, PredictServer

SETTINGS = TextModelSettings(INTENTS, buckets=4096, dim=16)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    index = {c: i for i, c in enumerate(INTENTS)}
    messages = make_messages(600, 21)
    data = text_train_data(
        [m.text for m in messages], [index[m.intent] for m in messages], SETTINGS
    )
    trainer = TextTrainer(build_text_classifier(SETTINGS, seed=0))
    trainer.fit(data, FitConfig(epochs=4, batch_size=32, lr=0.05, optimizer="adam"))
    path = tmp_path_factory.mktemp("model") / "intents.safetensors"
    return save_text_model(path, trainer.get_weights(), SETTINGS)


@pytest.fixture(scope="module")
def server(model_file: Path) -> Iterator[PredictServer]:
    running = PredictServer(IntentPredictor.from_file(model_file)).start()
    yield running
    running.stop()


def test_predicts_an_intent_from_redacted_text(server: PredictServer) -> None:
    assert server.url.startswith("http://127.0.0.1:")
    text = "您好，我是王小明，电话13912345678，我想提前还清贷款"
    reply = httpx.post(f"{server.url}/predict", json={"text": text}, timeout=10)
    assert reply.status_code == 200
    body = reply.json()
    assert body["intent"] == "办理提前还款"
    assert 1 / 12 < body["probability"] <= 1.0
    assert "13912345678" not in body["redacted"] and "王小明" not in body["redacted"]
    assert "[手机号]" in body["redacted"] and "[姓名]" in body["redacted"]
    health = httpx.get(f"{server.url}/health", timeout=10).json()
    assert health["intents"] == list(INTENTS)


@pytest.mark.parametrize(
    ("payload", "status", "says"),
    [
        ({"text": ""}, 422, "text must not be empty"),
        ({"text": "   "}, 422, "text must not be empty"),
        ({}, 422, "text is required"),
        ({"text": "查余额", "lang": "zh"}, 422, "unknown field lang"),
        ({"text": "x" * 2001}, 422, "at most 2000 characters"),
    ],
)
def test_bad_requests_get_a_clear_4xx(
    server: PredictServer, payload: dict[str, object], status: int, says: str
) -> None:
    reply = httpx.post(f"{server.url}/predict", json=payload, timeout=10)
    assert reply.status_code == status
    assert reply.headers["content-type"].startswith("application/problem+json")
    assert says in reply.json()["detail"]


def test_malformed_json_is_a_400(server: PredictServer) -> None:
    reply = httpx.post(
        f"{server.url}/predict",
        content=b'{"text": "unterminated',
        headers={"content-type": "application/json"},
        timeout=10,
    )
    assert reply.status_code == 400
    assert reply.json()["title"] == "Malformed JSON"


def test_only_loopback_addresses_are_allowed(model_file: Path) -> None:
    predictor = IntentPredictor.from_file(model_file)
    with pytest.raises(ConfigError, match="loopback address only"):
        PredictServer(predictor, host="0.0.0.0")
    with pytest.raises(ConfigError, match="port must be an integer"):
        PredictServer(predictor, port=70000)
    with pytest.raises(ConfigError, match="not started"):
        _ = PredictServer(predictor).url
