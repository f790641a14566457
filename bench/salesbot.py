"""Sales-bot intents: federated training on redacted text against pooled and branch-only models.

Three branches (``data.salesbot.BRANCH_MIX``: retail, loans, hotline, each with its own
intent mix) hold generated customer messages full of names, phone numbers and addresses.
Each branch's node (``node.text_runner.TextRunner``, the runner ``clawfed node`` uses)
reads its CSV, redacts the messages and trains the hashed n-gram ``TextClassifier``; FedAvg
(McMahan et al., AISTATS 2017) combines the deltas weighted by rows, for ``--rounds`` rounds
of one local epoch. The references train on the same redacted messages: pooled (all
branches in one place, the same number of epochs) and each branch alone. Every model is
scored on one balanced held-out set (other seed, all 12 intents, redacted alike).

Usage: ``python bench/salesbot.py [--rows 600] [--rounds 10] [--seed 0]``
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from clawfed.coordinator.jobspec import parse_job
from clawfed.coordinator.task_config import task_config
from clawfed.core import Weights
from clawfed.data.salesbot import BRANCH_MIX, INTENTS, write_salesbot_scenario
from clawfed.learning import EvalConfig, FitConfig
from clawfed.learning.text_classifier import (
    TextModelSettings,
    TextTrainer,
    build_text_classifier,
    text_train_data,
)
from clawfed.node.learning_runner import LocalData
from clawfed.node.text_runner import TextRunner, redact_texts

SETTINGS = TextModelSettings(INTENTS)
FIT = {"epochs": 1, "batch_size": 32, "lr": 0.02, "optimizer": "adam"}


def job(rounds: int) -> str:
    model = json.dumps(
        {"name": "text_classifier", "settings": SETTINGS.to_settings()}, ensure_ascii=False
    )
    return (
        f"name: intents\nrounds: {rounds}\nmodel: {model}\ndataset: intents\n"
        "data: {target: intent, features: [message], standardize: false, "
        "holdout_fraction: 0.1}\n" + f"train: {json.dumps(FIT)}\n"
    )


def test_set(path: Path) -> tuple[list[str], np.ndarray]:
    frame = pd.read_csv(path)
    texts, _ = redact_texts(frame["message"].astype(str).tolist())
    index = {c: i for i, c in enumerate(INTENTS)}
    return texts, np.array([index[i] for i in frame["intent"]], dtype=np.int64)


def score(weights: Weights, texts: list[str], labels: np.ndarray) -> dict[str, float]:
    trainer = TextTrainer(build_text_classifier(SETTINGS))
    trainer.set_weights(weights)
    return dict(trainer.evaluate(text_train_data(texts, labels, SETTINGS), EvalConfig()).metrics)


def federated(runners: dict[str, TextRunner], config: dict, rounds: int) -> Weights:  # type: ignore[type-arg]
    first = next(iter(runners.values()))
    weights = first.init(config)
    for round_no in range(1, rounds + 1):
        answers = [r.fit({**config, "round": round_no}, weights) for r in runners.values()]
        total = sum(a.num_samples for a in answers)
        weights = Weights(
            (name, w + sum(a.num_samples * a.delta[name] for a in answers) / total)
            for name, w in weights.items()
        )
    return weights


def central(texts: list[str], labels: np.ndarray, epochs: int, seed: int) -> Weights:
    trainer = TextTrainer(build_text_classifier(SETTINGS, seed=seed))
    data = text_train_data(texts, labels, SETTINGS)
    for e in range(epochs):
        trainer.fit(data, FitConfig(**{**FIT, "seed": seed + e}))  # type: ignore[arg-type]
    return trainer.get_weights()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=600, help="messages per branch")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        files = write_salesbot_scenario(Path(tmp), args.rows, args.seed, holdout_rows=600)
        config = task_config(parse_job(job(args.rounds)))
        runners = {b: TextRunner({"intents": LocalData("intents", files[b])}) for b in BRANCH_MIX}
        started = time.perf_counter()
        for r in runners.values():  # read + redact once (cached for the rounds)
            r.evaluate(config, r.init(config))
        redact_s = time.perf_counter() - started
        texts, labels = test_set(files["test"])
        started = time.perf_counter()
        fed = federated(runners, config, args.rounds)
        fed_s = time.perf_counter() - started
        branch_data: dict[str, tuple[list[str], np.ndarray]] = {}
        for b in BRANCH_MIX:
            frame = pd.read_csv(files[b].with_name(f"{b}.csv"))
            clean, _ = redact_texts(frame["message"].astype(str).tolist())
            index = {c: i for i, c in enumerate(INTENTS)}
            branch_data[b] = (clean, np.array([index[i] for i in frame["intent"]]))
        pooled_texts = [t for b in BRANCH_MIX for t in branch_data[b][0]]
        pooled_labels = np.concatenate([branch_data[b][1] for b in BRANCH_MIX])
        rows = [("federated (FedAvg, 3 branches)", score(fed, texts, labels))]
        rows.append(
            (
                "pooled (all rows in one place)",
                score(central(pooled_texts, pooled_labels, args.rounds, args.seed), texts, labels),
            )
        )
        for b in BRANCH_MIX:
            w = central(*branch_data[b], args.rounds, args.seed)
            rows.append((f"{b} alone", score(w, texts, labels)))
    print(
        f"{args.rows} messages per branch, {args.rounds} rounds x 1 local epoch, "
        f"{len(texts)} held-out messages; redaction of {3 * args.rows} messages "
        f"{redact_s:.1f} s, federated training {fed_s:.1f} s"
    )
    print()
    print("| model | macro-F1 | accuracy |")
    print("| --- | ---: | ---: |")
    for name, m in rows:
        print(f"| {name} | {m['macro_f1']:.3f} | {m['accuracy']:.3f} |")


if __name__ == "__main__":
    main()
