"""Chat notification texts in Chinese and English, plain and WeCom markdown."""

from __future__ import annotations

import pytest

from clawfed.chat.notices import (
    ApprovalRequested,
    JobStarted,
    MetricChange,
    MetricDropped,
    NodeBack,
    NodeDropped,
    NodeJoined,
    NodeLost,
    Notice,
    NoticeError,
    RoundFinished,
    UpdateRefused,
    VersionPublished,
)
from clawfed.chat.templates import (
    Fmt,
    Lang,
    anomaly,
    approval_requested,
    change_phrase,
    job_started,
    node_back,
    node_joined,
    node_lost,
    render,
    round_finished,
    version_published,
)
from clawfed.core.errors import RejectReason

DIGEST = "3f" * 32


def test_round_finished_in_the_departments_own_name_with_signed_changes() -> None:
    n = RoundFinished(
        "反欺诈",
        5,
        (
            MetricChange("生产部", "accuracy", 0.912, 0.889),
            MetricChange("质检部", "accuracy", 0.850, 0.871),
            MetricChange("信贷部", "accuracy", 0.900, 0.9004),
            MetricChange("审计部", "recall", 0.7),
        ),
        total_rounds=10,
    )
    zh = round_finished(n).splitlines()
    assert zh == [
        "任务「反欺诈」第5/10轮训练完成",
        "生产部本轮训练完成，准确率提升2.3%（现为91.2%）",
        "质检部本轮训练完成，准确率下降2.1%（现为85.0%）",
        "信贷部本轮训练完成，准确率持平（现为90.0%）",
        "审计部本轮训练完成，召回率70.0%",
    ]
    en = round_finished(n, Lang.EN).splitlines()
    assert en == [
        "Job '反欺诈': round 5/10 finished",
        "生产部: accuracy up 2.3% (now 91.2%)",
        "质检部: accuracy down 2.1% (now 85.0%)",
        "信贷部: accuracy unchanged (now 90.0%)",
        "审计部: recall 70.0%",
    ]


@pytest.mark.parametrize(
    ("change", "zh", "en"),
    [
        (
            MetricChange("d", "loss", 0.24, 0.25),
            "损失下降4.0%（现为0.24）",
            "loss down 4.0% (now 0.24)",
        ),
        (
            MetricChange("d", "loss", 0.3, 0.25),
            "损失上升20.0%（现为0.3）",
            "loss up 20.0% (now 0.3)",
        ),
        (
            MetricChange("d", "sales", 12500, 10000),
            "销量提升25.0%（现为12,500）",
            "sales up 25.0% (now 12,500)",
        ),
        (MetricChange("d", "error", 0.0, 0.0), "偏差持平（现为0）", "error unchanged (now 0)"),
        (MetricChange("d", "error", 0.5, 0.0), "偏差上升（现为0.5）", "error up (now 0.5)"),
        (MetricChange("d", "f1", 0.8004, 0.8), "F1持平（现为80.0%）", "F1 unchanged (now 80.0%)"),
        (MetricChange("d", "f1", 0.8006, 0.8), "F1提升0.1%（现为80.1%）", "F1 up 0.1% (now 80.1%)"),
        (
            MetricChange("d", "throughput", 1.5, 1.0),
            "throughput提升50.0%（现为1.5）",
            "throughput up 50.0% (now 1.5)",
        ),
    ],
)
def test_change_phrase(change: MetricChange, zh: str, en: str) -> None:
    assert change_phrase(change, Lang.ZH) == zh
    assert change_phrase(change, Lang.EN) == en


def test_markdown_colours_good_green_and_bad_orange() -> None:
    good = change_phrase(MetricChange("d", "loss", 0.2, 0.25), Lang.ZH, Fmt.MARKDOWN)
    bad = change_phrase(MetricChange("d", "accuracy", 0.8, 0.9), Lang.EN, Fmt.MARKDOWN)
    assert good == '损失<font color="info">下降20.0%</font>（现为0.2）'
    assert bad == 'accuracy <font color="warning">down 10.0%</font> (now 80.0%)'


def test_job_started() -> None:
    n = JobStarted("反欺诈", ("信贷部", "合规部"), 10)
    assert job_started(n) == "任务「反欺诈」开始训练\n参与部门（2个）：信贷部、合规部\n计划轮数：10"
    assert job_started(n, Lang.EN) == (
        "Job '反欺诈' started training\nDepartments (2): 信贷部, 合规部\nRounds planned: 10"
    )
    md = job_started(n, Lang.ZH, Fmt.MARKDOWN).splitlines()
    assert md[0] == "**任务「反欺诈」开始训练**" and all(x.startswith("> ") for x in md[1:])


def test_node_events() -> None:
    assert node_joined(NodeJoined("信贷部", "node-7")) == "信贷部节点已加入联邦\n节点：node-7"
    assert node_joined(NodeJoined("Credit", "n7"), Lang.EN) == "Credit node joined\nNode: n7"
    lost = NodeLost("合规部", "node-3", silent_seconds=310)
    assert node_lost(lost).endswith("最后心跳：5分钟前")
    assert node_lost(lost, Lang.EN).endswith("Last heartbeat: 5 min ago")
    assert '<font color="warning">合规部节点已失联</font>' in node_lost(lost, fmt=Fmt.MARKDOWN)
    back = NodeBack("合规部", "node-3", offline_seconds=7500)
    assert node_back(back).splitlines() == [
        "合规部节点已恢复在线",
        "节点：node-3",
        "离线时长：2小时5分钟",
    ]
    assert node_back(back, Lang.EN).endswith("Offline for: 2 h 5 min")
    assert node_back(NodeBack("合规部", "n", 42)).endswith("42秒")
    assert node_back(NodeBack("合规部", "n")).count("\n") == 1


def test_version_published_lists_synced_departments() -> None:
    n = VersionPublished("反欺诈", 7, DIGEST, ("质检部", "生产部"))
    assert version_published(n).splitlines() == [
        "任务「反欺诈」模型 v7 已发布",
        f"sha256 {DIGEST[:12]}",
        "质检部模型已同步",
        "生产部模型已同步",
    ]
    assert "质检部: model synced" in version_published(n, Lang.EN)


def test_anomalies_name_department_and_reason() -> None:
    drop = MetricDropped("反欺诈", MetricChange("质检部", "accuracy", 0.832, 0.873), 5)
    assert anomaly(drop) == "异常：任务「反欺诈」第5轮指标下降\n质检部准确率下降4.1%（现为83.2%）"
    assert anomaly(drop, Lang.EN).startswith("Anomaly: metric drop in job '反欺诈', round 5")
    rejected = UpdateRefused("反欺诈", "信贷部", RejectReason.NON_FINITE, 5)
    assert anomaly(rejected).endswith("信贷部提交的更新被拒绝，原因：含非有限数值（NaN/Inf）")
    assert anomaly(rejected, Lang.EN).endswith(
        "信贷部: update rejected, non-finite values (NaN/Inf)"
    )
    custom = UpdateRefused("反欺诈", "信贷部", "更新范数超过阈值", 5)
    assert anomaly(custom).endswith("原因：更新范数超过阈值")
    dropped = NodeDropped("反欺诈", "生产部", "node-2", 5, "心跳超时")
    assert anomaly(dropped).splitlines() == [
        "异常：任务「反欺诈」第5轮节点掉线",
        "生产部节点 node-2 掉线，原因：心跳超时",
    ]
    md = anomaly(NodeDropped("j", "生产部", "node-2", 5), Lang.EN, Fmt.MARKDOWN)
    assert md.startswith('**<font color="warning">Anomaly: node dropped') and "原因" not in md


def test_approval_request_tells_the_head_which_command_to_send() -> None:
    n = ApprovalRequested("fraud-v2", "质检部", "张三", "年度审计")
    zh = approval_requested(n)
    assert "张三申请使用质检部的数据" in zh and "用途：年度审计" in zh
    assert "回复 /批准 fraud-v2 以同意" in zh
    assert "reply /approve fraud-v2 to approve" in approval_requested(n, Lang.EN)


def test_markdown_escapes_outside_values() -> None:
    n = ApprovalRequested("j", "质检部", "<b>**mallory**</b>", "[x](http://evil)")
    md = approval_requested(n, Lang.ZH, Fmt.MARKDOWN)
    assert "<b>" not in md and "**mallory" not in md and "](http" not in md
    assert "<b>" in approval_requested(n, Lang.ZH, Fmt.TEXT)  # plain text is left alone


NOTICES: list[Notice] = [
    JobStarted("j", ("a",), 1),
    RoundFinished("j", 1, (MetricChange("a", "accuracy", 0.5),)),
    NodeJoined("a", "n"),
    NodeLost("a", "n"),
    NodeBack("a", "n"),
    VersionPublished("j", 1, DIGEST),
    MetricDropped("j", MetricChange("a", "auc", 0.5, 0.6), 1),
    UpdateRefused("j", "a", "x", 1),
    NodeDropped("j", "a", "n", 1),
    ApprovalRequested("j", "a", "r", "p"),
]


@pytest.mark.parametrize("notice", NOTICES, ids=lambda n: type(n).__name__)
def test_render_covers_every_notice_in_both_languages_and_formats(notice: Notice) -> None:
    texts = {(lang, fmt): render(notice, lang, fmt) for lang in Lang for fmt in Fmt}
    assert len(set(texts.values())) == 4
    assert all(t.strip() for t in texts.values())
    assert render(notice) == texts[(Lang.ZH, Fmt.TEXT)]


@pytest.mark.parametrize(
    ("build", "needle"),
    [
        (lambda: MetricChange("d", "accuracy", float("nan")), "must be finite"),
        (
            lambda: MetricChange("d", "accuracy", 91.2),
            "ratio and must lie in \\[0, 1\\], got value=91.2",
        ),
        (lambda: MetricChange("", "accuracy", 0.9), "MetricChange.department must be non-empty"),
        (lambda: JobStarted("j", (), 3), "list of departments must not be empty"),
        (lambda: JobStarted("j", ("a",), 0), "JobStarted.rounds must be >= 1, got 0"),
        (lambda: RoundFinished("j", 1, ()), "results must not be empty"),
        (lambda: VersionPublished("j", 1, "not-hex"), "lower-case hex sha256, got 'not-hex'"),
        (lambda: NodeLost("a", "n", -1.0), "silent_seconds must be finite and >= 0"),
        (lambda: MetricDropped("j", MetricChange("a", "auc", 0.5), 1), "needs the previous value"),
        (lambda: NodeDropped("j", "a", "n", 1, " "), "NodeDropped.reason must be non-empty"),
    ],
)
def test_bad_values_are_refused_at_construction(build: object, needle: str) -> None:
    assert callable(build)
    with pytest.raises(NoticeError, match=needle):
        build()
