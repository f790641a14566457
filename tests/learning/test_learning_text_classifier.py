"""The hashed n-gram text classifier: settings, encoding, training, saving, the node runner."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from clawfed.coordinator.jobspec import parse_job
from clawfed.coordinator.task_config import task_config
from clawfed.core import ConfigError, DataError
from clawfed.data.salesbot import INTENTS, make_messages, write_salesbot_scenario
from clawfed.learning import EvalConfig, FitConfig, Trainer
from clawfed.learning.text_classifier import (
    TextModelSettings,
    TextTrainer,
    build_text_classifier,
    encode_texts,
    load_text_model,
    macro_f1,
    ngram_ids,
    save_text_model,
    text_train_data,
)
from clawfed.node.dispatch import DispatchRunner, LocalData
from clawfed.node.text_runner import load_text_rows, redact_texts
from clawfed.privacy.pii import redact

SETTINGS = TextModelSettings(INTENTS, buckets=4096, dim=16)
INDEX = {c: i for i, c in enumerate(INTENTS)}


def data_of(n: int, seed: int) -> tuple[list[str], list[int]]:
    messages = make_messages(n, seed)
    return [m.text for m in messages], [INDEX[m.intent] for m in messages]


def test_settings_are_validated() -> None:
    with pytest.raises(ConfigError, match="at least 2 distinct labels"):
        TextModelSettings(("a",))
    with pytest.raises(ConfigError, match="buckets must be an integer"):
        TextModelSettings(("a", "b"), buckets=2**25)
    with pytest.raises(ConfigError, match="max_n must be an integer in \\[3"):
        TextModelSettings(("a", "b"), min_n=3, max_n=2)
    with pytest.raises(ConfigError, match="unknown setting"):
        TextModelSettings.from_settings({"classes": ["a", "b"], "layers": 2})
    with pytest.raises(ConfigError, match="'classes' must be a list"):
        TextModelSettings.from_settings({"classes": "ab"})
    again = TextModelSettings.from_settings(SETTINGS.to_settings())
    assert again == SETTINGS


def test_ngrams_are_stable_bounded_and_padded() -> None:
    ids = ngram_ids("你好，利率多少", SETTINGS)
    assert ids == ngram_ids("你好，利率多少", SETTINGS)
    assert len(ids) == 7 + 6 + 5 and all(1 <= i <= SETTINGS.buckets for i in ids)
    short = TextModelSettings(INTENTS, max_tokens=4)
    assert len(ngram_ids("一二三四五六", short)) == 4
    x = encode_texts(["利率", "", "转人工服务"], SETTINGS)
    assert x.dtype == np.float32 and x.shape == (3, 5 + 4 + 3)
    assert (x[1] == 0).all() and (x[0, 3:] == 0).all()


def test_trains_and_beats_chance_by_far() -> None:
    texts, labels = data_of(600, 1)
    test_texts, test_labels = data_of(300, 2)
    trainer = TextTrainer(build_text_classifier(SETTINGS, seed=0))
    assert isinstance(trainer, Trainer)
    train = text_train_data(texts, labels, SETTINGS)
    first = trainer.fit(train, FitConfig(epochs=1, batch_size=32, lr=0.05, optimizer="adam"))
    later = trainer.fit(train, FitConfig(epochs=3, batch_size=32, lr=0.05, optimizer="adam"))
    assert later.metrics["loss"] < first.metrics["loss"]
    result = trainer.evaluate(text_train_data(test_texts, test_labels, SETTINGS), EvalConfig())
    assert result.metrics["macro_f1"] > 0.7  # chance is about 1/12
    assert result.metrics["accuracy"] > 0.7


def test_fit_is_deterministic_and_restores_weights_on_bad_data() -> None:
    texts, labels = data_of(120, 3)
    data = text_train_data(texts, labels, SETTINGS)
    runs = []
    for _ in range(2):
        t = TextTrainer(build_text_classifier(SETTINGS, seed=5))
        t.fit(data, FitConfig(epochs=1, batch_size=16, lr=0.1, seed=9))
        runs.append(t.get_weights())
    assert all(np.array_equal(runs[0][k], runs[1][k]) for k in runs[0])
    t = TextTrainer(build_text_classifier(SETTINGS, seed=5))
    before = t.get_weights()
    bad = text_train_data(texts, [20] * len(texts), SETTINGS)
    with pytest.raises(DataError, match="class indices below 12"):
        t.fit(bad, FitConfig())
    assert all(np.array_equal(before[k], t.get_weights()[k]) for k in before)


def test_macro_f1() -> None:
    assert macro_f1([0, 1, 1, 2], [0, 1, 1, 2], 3) == 1.0
    assert macro_f1([0, 0, 1, 1], [0, 1, 1, 1], 2) == pytest.approx((2 / 3 + 0.8) / 2)


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    trainer = TextTrainer(build_text_classifier(SETTINGS, seed=1))
    path = save_text_model(tmp_path / "m.safetensors", trainer.get_weights(), SETTINGS)
    loaded = load_text_model(path)
    ids = encode_texts(["我想提前还款"], SETTINGS)
    assert np.allclose(loaded.predict_proba(ids), trainer.predict_proba(ids))
    (tmp_path / "junk.safetensors").write_bytes(b"not a model")
    with pytest.raises(ConfigError, match="cannot be read"):
        load_text_model(tmp_path / "junk.safetensors")
    other = TextModelSettings(("a", "b"), buckets=4096, dim=16)
    with pytest.raises(ConfigError, match="do not fit the model"):
        save_text_model(tmp_path / "x.safetensors", trainer.get_weights(), other)


def test_node_redacts_before_encoding_and_trains_through_dispatch(tmp_path: Path) -> None:
    files = write_salesbot_scenario(tmp_path, rows_per_branch=60, seed=4, holdout_rows=12)
    job = parse_job(
        "name: intents\nrounds: 1\nmodel: {name: text_classifier, settings: "
        + json.dumps({"classes": list(INTENTS), "buckets": 4096, "dim": 16}, ensure_ascii=False)
        + "}\ndataset: intents\ndata: {target: intent, features: [message], standardize: false}\n"
        "train: {epochs: 2, batch_size: 16, lr: 0.05, optimizer: adam}\n"
    )
    config = task_config(job)
    runner = DispatchRunner({"intents": LocalData("intents", files["loans"])})
    answer = runner.fit(config, runner.init(config))
    assert answer.metrics["rows_used"] == answer.num_samples
    assert answer.delta.l2_norm() > 0
    assert set(runner.evaluate(config, runner.init(config)).metrics) >= {"accuracy", "macro_f1"}
    with pytest.raises(ConfigError, match="data.standardize: false"):
        runner.stats(config)

    # what was encoded is the redacted text, never the raw message
    from clawfed.node.learning_runner import resolve_offer
    from clawfed.node.task_setup import parse_task_config

    setup = parse_task_config(config)
    settings = TextModelSettings.from_settings(
        {"classes": list(INTENTS), "buckets": 4096, "dim": 16}
    )
    rows = load_text_rows(resolve_offer(LocalData("intents", files["loans"])), setup.data, settings)
    assert rows.redacted > 0
    import pandas as pd

    raw = pd.read_csv(tmp_path / "loans.csv")["message"].tolist()
    clean, found = redact_texts(raw)
    assert found == rows.redacted and clean != raw
    encoded = {tuple(ngram_ids(t, settings)) for t in clean}
    got = {tuple(int(v) for v in row if v) for row in rows.train.features}
    assert got <= encoded
    assert not got & ({tuple(ngram_ids(t, settings)) for t in raw} - encoded)
    assert redact(raw[0]).text in clean


def test_job_files_name_the_text_classifier_with_its_settings() -> None:
    from clawfed.coordinator.model_spec import MODEL_SETTINGS, TEXT_MODELS
    from clawfed.learning.text_classifier import DEFAULTS, TEXT_CLASSIFIER

    assert TEXT_MODELS == (TEXT_CLASSIFIER,)
    assert set(MODEL_SETTINGS[TEXT_CLASSIFIER]) == {"classes", *DEFAULTS}
    head = "name: j\nrounds: 1\nmodel: {name: text_classifier, settings: "
    with pytest.raises(ConfigError, match="'classes' must list at least 2 distinct labels"):
        parse_job(head + "{classes: [a, a]}}\n")
    with pytest.raises(ConfigError, match="'dim' must be an integer >= 1"):
        parse_job(head + "{classes: [a, b], dim: 0}}\n")
    with pytest.raises(ConfigError, match="unknown setting"):
        parse_job(head + "{classes: [a, b], depth: 2}}\n")
