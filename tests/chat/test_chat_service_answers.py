"""Answers to commands and questions, read from a real (seeded) governance store."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import update
from test_chat_service_support import seeded

from clawfed.chat.nlu import Lang, help_reply, not_understood_reply
from clawfed.chat.service import Answerer, ChartAnswer, ChatStore, TextAnswer
from clawfed.chat.service.replies import BarChart, LineChart
from clawfed.governance import Database, sqlite_url
from clawfed.governance.tables import AuditRow

ZONE = ZoneInfo("Asia/Shanghai")


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    """One seeded store shared by the read-only tests of this module."""
    database = seeded(tmp_path_factory.mktemp("answers"))
    yield database
    database.close()


def answerer(db: Database, today: date = date(2026, 11, 14)) -> Answerer:
    return Answerer(ChatStore(db), ZONE, today=lambda: today)


def text(db: Database, message: str, today: date = date(2026, 11, 14)) -> str:
    answer = answerer(db, today).answer(message)
    assert isinstance(answer, TextAnswer), answer
    return answer.text


def test_status_lists_nodes_and_live_jobs(db: Database) -> None:
    reply = text(db, "/状态")
    assert "节点（2/3 在线）" in reply
    assert "信贷部 n-credit 在线" in reply
    assert "审计部 n-audit 离线（最后心跳 10-05 10:00）" in reply
    assert "fraud 运行中 3/5轮" in reply
    english = text(db, "/status")
    assert "Nodes (2/3 online)" in english and "fraud running 3/5 rounds" in english


def test_jobs_and_versions(db: Database) -> None:
    assert "fraud 运行中 3/5轮" in text(db, "/任务")
    versions = text(db, "/版本 fraud")
    assert versions.index("fraud@v3") < versions.index("fraud@v2") < versions.index("fraud@v1")
    assert "第3轮" in versions and "参与：信贷部、合规部" in versions
    assert "准确率 83.5%" in versions
    assert "没有名为「nosuch」的任务。现有任务：fraud" in text(db, "/版本 nosuch")
    assert "Model versions (3)" in text(db, "/versions")


def test_audit_shows_entries_and_the_chain_check(tmp_path: Path) -> None:
    db = seeded(tmp_path)
    reply = text(db, "/审计")
    assert reply.index("#3") < reply.index("#1")
    assert "data-admin job.submit job:fraud ok" in reply
    assert "审计链校验：完好（共 3 条）" in reply
    with db.session() as s:
        s.execute(update(AuditRow).where(AuditRow.seq == 2).values(actor="someone-else"))
    assert "审计链校验失败：第 2 条" in text(db, "/审计")
    assert "Audit chain check FAILED at entry 2" in text(db, "/audit")
    db.close()


def test_audit_question_filters_by_department(db: Database) -> None:
    reply = text(db, "信贷部最近的审计记录")
    assert "n-credit connect" in reply
    assert "n-comp" not in reply and "job.submit" not in reply


def test_train_and_approve_say_what_they_cannot_do(db: Database) -> None:
    train = text(db, "/训练 fraud")
    assert "管理接口" in train and "训练任务「fraud」" in train
    approve = text(db, "/批准 fraud 年度审计")
    assert "未启用审批流程" in approve
    assert "approval workflow not enabled in this version" in approve
    assert "任务「fraud」，用途：年度审计" in approve
    assert "Approval workflow not enabled" in text(db, "/approve fraud")


def test_help_and_bad_commands(db: Database) -> None:
    assert text(db, "/帮助") == help_reply(Lang.ZH)
    assert text(db, "/help") == help_reply(Lang.EN)
    assert text(db, "/帮助 训练") == "/训练 <任务>"
    assert "缺少任务名" in text(db, "/训练")
    assert "没有命令「/飞」" in text(db, "/飞")
    assert text(db, "你好") == not_understood_reply(Lang.ZH)
    assert text(db, "hello there") == not_understood_reply(Lang.EN)


def test_training_progress(db: Database) -> None:
    reply = text(db, "训练进度怎么样？")
    assert reply == "任务「fraud」运行中：已完成 3/5 轮，最新模型 fraud@v3，准确率 83.5%"
    assert "Job 'fraud' running: 3/5 rounds done" in text(db, "How is training going?")


def test_metric_of_one_department(db: Database) -> None:
    reply = text(db, "信贷部模型准确率多少？")
    assert "fraud@v3（第3轮）的准确率" in reply
    assert "信贷部 88.0%" in reply and "合规部" not in reply
    english = text(db, "What is the accuracy of the credit model?")
    assert "信贷部 88.0%" in english and "accuracy" in english
    loss = text(db, "合规部的损失是多少")
    assert "合规部 0.5" in loss


def test_metric_not_recorded_is_said_plainly(db: Database) -> None:
    reply = text(db, "信贷部的召回率是多少")
    assert "没有「召回率」的记录（现有指标：准确率、损失）" in reply
    assert "信贷部 88.0%" in reply


def test_node_status_question(db: Database) -> None:
    assert "审计部 n-audit 离线" in text(db, "审计部节点在线吗？")
    assert "信贷部 n-credit 在线" not in text(db, "审计部节点在线吗？")
    assert text(db, "质检部节点在线吗？") == "没有该部门的节点。"


def test_contribution_ranking_by_samples_in_the_period(db: Database) -> None:
    reply = text(db, "上周哪个部门贡献最大？", today=date(2026, 10, 14))
    assert "2026-10-05 至 2026-10-11 各部门贡献（按参与训练的样本数，3 轮）" in reply
    assert reply.index("1. 合规部 6,000") < reply.index("2. 信贷部 3,000")
    empty = text(db, "上周哪个部门贡献最大？", today=date(2026, 11, 14))
    assert empty == "2026-11-02 至 2026-11-08 内没有完成的训练轮次。"


def test_region_comparison_says_there_is_no_region_data(db: Database) -> None:
    question = "对比下华东和华南区域上月销量预测偏差"
    reply = text(db, question, today=date(2026, 11, 14))
    assert reply.startswith("没有区域销量预测数据")
    assert "华东、华南" in reply
    assert "2026-10-01 至 2026-10-31 内各部门的模型指标" in reply
    assert "没有「偏差」的记录" in reply
    assert "信贷部 88.0%" in reply and "合规部 79.0%" in reply
    later = text(db, question, today=date(2026, 12, 14))
    assert "2026-11-01 至 2026-11-30 内也没有完成的训练轮次" in later


def test_department_comparison_is_a_bar_chart(db: Database) -> None:
    answer = answerer(db).answer("对比信贷部和合规部的准确率")
    assert isinstance(answer, ChartAnswer)
    assert answer.ack == "收到，正在计算…"
    assert isinstance(answer.chart, BarChart)
    assert [(b.department, b.value) for b in answer.chart.bars] == [
        ("信贷部", 0.88),
        ("合规部", 0.79),
    ]
    assert answer.chart.percent
    assert "fraud@v3 各部门准确率对比" in answer.caption
    assert answer.chart.render().startswith(b"\x89PNG")


def test_trend_question_is_a_line_chart(db: Database) -> None:
    answer = answerer(db).answer("画一下信贷部准确率的趋势图")
    assert isinstance(answer, ChartAnswer)
    assert isinstance(answer.chart, LineChart)
    [series] = answer.chart.series
    assert series.department == "信贷部"
    assert series.points == ((1, 0.80), (2, 0.85), (3, 0.88))
    both = answerer(db).answer("show accuracy chart for credit and compliance")
    assert isinstance(both, ChartAnswer) and isinstance(both.chart, LineChart)
    assert [s.department for s in both.chart.series] == ["信贷部", "合规部"]
    assert both.ack == "Got it, working on it…"


def test_questions_without_any_training_yet(tmp_path: Path) -> None:
    with Database(sqlite_url(tmp_path / "empty.db")) as empty:
        empty.upgrade()
        assert text(empty, "信贷部模型准确率多少？") == "还没有完成过训练轮次的任务。"
        assert text(empty, "/版本") == "还没有模型版本。"
        assert "还没有登记的节点" in text(empty, "/状态")
        assert text(empty, "训练进度怎么样？") == "还没有任务。"
