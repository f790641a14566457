"""The sales-bot scenario: deterministic, 12 intents, non-IID branches, PII in every branch."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from clawfed.core import ConfigError
from clawfed.data import load_spec
from clawfed.data.salesbot import (
    BRANCH_MIX,
    INTENTS,
    branch_messages,
    make_message,
    make_messages,
    write_salesbot_scenario,
)
from clawfed.privacy.pii import redact

MOBILE = re.compile(r"1[3-9][0-9](?:[ -]?[0-9]{4}){2}")


def test_same_seed_same_messages_other_seed_other_messages() -> None:
    assert make_messages(50, 3) == make_messages(50, 3)
    assert make_messages(50, 3) != make_messages(50, 4)
    assert branch_messages("loans", 30, 1) == branch_messages("loans", 30, 1)


def test_all_twelve_intents_appear() -> None:
    assert len(INTENTS) == 12 and len(set(INTENTS)) == 12
    seen = {m.intent for m in make_messages(600, 0)}
    assert seen == set(INTENTS)
    for branch in BRANCH_MIX:
        assert {m.intent for m in branch_messages(branch, 600, 0)} == set(INTENTS)


def _shares(branch: str) -> dict[str, float]:
    counts = Counter(m.intent for m in branch_messages(branch, 1200, 5))
    return {i: counts[i] / 1200 for i in INTENTS}


def test_branches_are_non_iid() -> None:
    shares = {b: _shares(b) for b in BRANCH_MIX}
    for a in BRANCH_MIX:
        for b in BRANCH_MIX:
            if a < b:
                tv = 0.5 * sum(abs(shares[a][i] - shares[b][i]) for i in INTENTS)
                assert tv > 0.25, (a, b, tv)
    assert max(shares["hotline"], key=shares["hotline"].__getitem__) in (
        "投诉服务质量",
        "转人工服务",
    )
    assert shares["loans"]["办理提前还款"] > 3 * shares["retail"]["办理提前还款"]


def test_messages_carry_pii_that_redaction_removes() -> None:
    messages = make_messages(120, 9)
    with_pii = [m for m in messages if m.pii]
    assert len(with_pii) > 0.7 * len(messages)
    assert any(MOBILE.search(m.text) for m in messages)
    for m in with_pii:
        for value in m.pii:
            assert value in m.text
        clean = redact(m.text).text
        for value in m.pii:
            assert value not in clean, (value, clean)
        assert not MOBILE.search(clean)


def test_scenario_files_and_specs(tmp_path: Path) -> None:
    files = write_salesbot_scenario(tmp_path, rows_per_branch=40, seed=2, holdout_rows=24)
    assert set(files) == {*BRANCH_MIX, "test"}
    for branch in BRANCH_MIX:
        spec = load_spec(files[branch])
        assert spec.text_column == "message" and spec.redact and spec.target == "intent"
        frame = pd.read_csv(tmp_path / f"{branch}.csv")
        assert list(frame.columns) == ["message", "intent"] and len(frame) == 40
    assert len(pd.read_csv(files["test"])) == 24


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="n must be an integer >= 1"):
        make_messages(0, 1)
    with pytest.raises(ConfigError, match="weights must be 12"):
        make_messages(5, 1, [1.0, 2.0])
    with pytest.raises(ConfigError, match="unknown branch 'nope'"):
        branch_messages("nope", 5, 1)
    import random

    with pytest.raises(ConfigError, match="unknown intent"):
        make_message("买股票", random.Random(1))
