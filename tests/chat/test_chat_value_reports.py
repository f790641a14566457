"""Reports in business language: a job's value mapping in round notices and ``models show``."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from chat_retail_support import seed_retail
from pydantic import ValidationError
from test_chat_service_support import chat_config
from typer.testing import CliRunner

from clawfed.chat.fake_wecom import FakeWeComServer, serve_fake_wecom
from clawfed.chat.outbox import Outbox
from clawfed.chat.service import ChatStore, ConfiguredChannels, Notifier
from clawfed.chat.templates import Fmt
from clawfed.cli.main import app
from clawfed.coordinator.jobspec import parse_job
from clawfed.coordinator.valuemap import ValueMapping, value_change
from clawfed.coordinator.workspace import init_workspace
from clawfed.core import ConfigError
from clawfed.governance import Database, sqlite_url
from retail_support import JOB, retail_spec

RECALL = ValueMapping(
    metric="recall_at_1pct_fpr", per=0.01, amount=120, unit="万元/年", meaning="避免的欺诈损失"
)


def test_a_change_is_priced_in_the_declared_unit() -> None:
    change = value_change(RECALL, {"recall_at_1pct_fpr": 0.50}, {"recall_at_1pct_fpr": 0.52})
    assert change is not None
    assert change.worth == pytest.approx(240.0)
    assert change.text() == "recall_at_1pct_fpr +0.0200 ≈ +240 万元/年（避免的欺诈损失）"
    assert change.text(zh=False).endswith("≈ +240 万元/年 (避免的欺诈损失)")
    mae = ValueMapping(metric="mae", per=1, amount=0.8, unit="万元/年", higher_is_better=False)
    better = value_change(mae, {"mae": 60.0}, {"mae": 50.0})
    assert better is not None and better.worth == pytest.approx(8.0)
    assert value_change(RECALL, None, {"recall_at_1pct_fpr": 0.5}) is None
    assert value_change(RECALL, {"auc": 0.5}, {"recall_at_1pct_fpr": 0.5}) is None


def test_value_mappings_are_validated_in_the_job_file() -> None:
    with pytest.raises(ValidationError, match="greater than 0"):
        ValueMapping(metric="mae", per=0, amount=1, unit="元")
    with pytest.raises(ValidationError, match="must not be 0"):
        ValueMapping(metric="mae", per=1, amount=0, unit="元")
    with pytest.raises(ConfigError, match="value.metric"):
        retail_spec(value={"metric": "bad name!", "per": 1, "amount": 1, "unit": "元"})
    spec = retail_spec()
    assert spec.value is not None and spec.value.unit == "万元/年"
    assert parse_job(spec.to_yaml()).value == spec.value  # stored and read back alike


@dataclass
class _Participant:
    node_id: str
    department: str
    metrics: dict[str, float]


@dataclass
class _Report:
    participants: list[_Participant]
    metrics: dict[str, float] = field(default_factory=dict)


@pytest.fixture()
def wecom() -> Iterator[FakeWeComServer]:
    with serve_fake_wecom() as running:
        yield running


def test_round_notice_states_the_value_of_the_change(
    tmp_path: Path, wecom: FakeWeComServer
) -> None:
    db = Database(sqlite_url(tmp_path / "coord.db"))
    db.create_all()
    try:
        seed_retail(db, tmp_path / "artifacts", [{"销售部": {"mae": 80.0}}])
        config = chat_config(wecom)
        outbox = Outbox(db, ConfiguredChannels(config))
        notifier = Notifier(config, outbox, store=ChatStore(db))
        report = _Report([_Participant("sales", "销售部", {"mae": 70.0})], {"mae": 70.0})
        data: dict[str, Any] = {"job_id": JOB, "round": 2, "report": report}
        notices = notifier.notices("round_completed", data)
        text = notices[0][1].render(config.language, Fmt.TEXT)
        assert "第2" in text and "业务价值：mae -10.0000 ≈ +8.0 万元/年（库存与缺货成本）" in text
        outbox.stop()
    finally:
        db.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_models_show_prices_the_change_against_the_parent(tmp_path: Path) -> None:
    ws = init_workspace(tmp_path / "ws", port=_free_port())
    db = ws.database()
    try:
        rounds = [{"销售部": {"mae": 90.0}}, {"销售部": {"mae": 75.0}}]
        seed_retail(db, ws.artifacts, rounds)
    finally:
        db.close()
    env = {"COLUMNS": "250", "NO_COLOR": "1", "CLAWFED_WORKSPACE": None}
    result = CliRunner(env=env).invoke(app, ["models", "show", f"{JOB}@v2", "-w", str(ws.root)])
    assert result.exit_code == 0, result.output
    assert f"vs {JOB}@v1: mae -15.0000 ≈ +12.0 万元/年（库存与缺货成本）" in result.output
    first = CliRunner(env=env).invoke(app, ["models", "show", f"{JOB}@v1", "-w", str(ws.root)])
    assert first.exit_code == 0 and "万元/年" not in first.output  # no parent, no change
