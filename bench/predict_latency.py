"""Latency of the node's ``POST /predict`` (redact + classify) over HTTP on 127.0.0.1.

Trains a small intent model on generated sales-bot messages, serves it with
``node.predict_server.PredictServer`` and sends ``--requests`` messages (other seed, with
names, phones and addresses) one after another over one keep-alive connection. Prints the
p50 / p95 / p99 of the round trip, and of the in-process steps (redaction alone, the model
alone), in milliseconds. The target is p50 <= 10 ms per message on one CPU core.

Usage: ``python bench/predict_latency.py [--requests 500]``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import torch

from clawfed.data.salesbot import INTENTS, make_messages
from clawfed.learning import FitConfig
from clawfed.learning.text_classifier import (
    TextModelSettings,
    TextTrainer,
    build_text_classifier,
    encode_texts,
    save_text_model,
    text_train_data,
)
from clawfed.node.predict_server import IntentPredictor, PredictServer
from clawfed.privacy.pii import redact


def percentiles(ms: list[float]) -> str:
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return f"| {p50:.2f} | {p95:.2f} | {p99:.2f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    args = parser.parse_args()
    torch.set_num_threads(1)
    settings = TextModelSettings(INTENTS)
    index = {c: i for i, c in enumerate(INTENTS)}
    train = make_messages(1200, 1)
    trainer = TextTrainer(build_text_classifier(settings, seed=0))
    data = text_train_data([m.text for m in train], [index[m.intent] for m in train], settings)
    trainer.fit(data, FitConfig(epochs=3, batch_size=32, lr=0.02, optimizer="adam"))
    messages = [m.text for m in make_messages(args.requests, 2)]
    with tempfile.TemporaryDirectory() as tmp:
        path = save_text_model(Path(tmp) / "m.safetensors", trainer.get_weights(), settings)
        predictor = IntentPredictor.from_file(path)
        server = PredictServer(predictor).start()
        try:
            http: list[float] = []
            with httpx.Client(base_url=server.url, timeout=10) as client:
                for text in messages[:20]:  # warm-up
                    client.post("/predict", json={"text": text})
                for text in messages:
                    t = time.perf_counter()
                    reply = client.post("/predict", json={"text": text})
                    http.append((time.perf_counter() - t) * 1000)
                    reply.raise_for_status()
        finally:
            server.stop()
    red: list[float] = []
    model: list[float] = []
    for text in messages:
        t = time.perf_counter()
        clean = redact(text).text
        red.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        trainer.predict_proba(encode_texts([clean], settings))
        model.append((time.perf_counter() - t) * 1000)
    length = np.mean([len(m) for m in messages])
    print(f"{args.requests} messages, {length:.0f} characters on average, 1 torch thread")
    print()
    print("| step | p50 ms | p95 ms | p99 ms |")
    print("| --- | ---: | ---: | ---: |")
    print("| POST /predict round trip " + percentiles(http))
    print("| redaction (rules + LAC) " + percentiles(red))
    print("| n-gram encoding + model " + percentiles(model))


if __name__ == "__main__":
    main()
