"""Chat answers as text: status, jobs, versions, audit, progress and metrics (zh / en)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from clawfed.chat.nlu.lang import Lang
from clawfed.chat.nlu.timerange import TimeRange
from clawfed.chat.service.vocab import format_value, metric_label, metric_value
from clawfed.governance.audit import AuditRecord
from clawfed.governance.audit_chain import VerifyResult
from clawfed.governance.jobs import JobRecord, JobStatus
from clawfed.governance.nodes import NodeRecord
from clawfed.governance.registry import ModelVersion

MAX_LINES = 20
_STATUS = {
    JobStatus.PENDING: ("等待中", "pending"),
    JobStatus.RUNNING: ("运行中", "running"),
    JobStatus.COMPLETED: ("已完成", "completed"),
    JobStatus.FAILED: ("失败", "failed"),
    JobStatus.CANCELLED: ("已取消", "cancelled"),
}


def t(lang: Lang, zh: str, en: str) -> str:
    """The text in the reply language."""
    return zh if lang is Lang.ZH else en


def when(moment: datetime | None, zone: ZoneInfo, lang: Lang) -> str:
    """A timestamp as local "MM-DD HH:MM" ("从未" / "never" for None)."""
    if moment is None:
        return t(lang, "从未", "never")
    return moment.astimezone(zone).strftime("%m-%d %H:%M")


def span(r: TimeRange, lang: Lang) -> str:
    """A date range, e.g. "2026-10-01 至 2026-10-31"."""
    if r.start == r.end:
        return r.start.isoformat()
    return t(lang, f"{r.start} 至 {r.end}", f"{r.start} to {r.end}")


def bullets(lines: Sequence[str], lang: Lang) -> list[str]:
    """At most ``MAX_LINES`` bullet lines, then how many were left out."""
    out = [f"· {line}" for line in lines[:MAX_LINES]]
    if len(lines) > MAX_LINES:
        rest = len(lines) - MAX_LINES
        out.append(t(lang, f"……另有 {rest} 条", f"... and {rest} more"))
    return out


def joined(names: Sequence[str], lang: Lang) -> str:
    """Names joined the way the language lists them."""
    return t(lang, "、", ", ").join(names)


def job_status(status: JobStatus, lang: Lang) -> str:
    """A job status in words."""
    zh, en = _STATUS[status]
    return t(lang, zh, en)


def node_line(n: NodeRecord, zone: ZoneInfo, lang: Lang) -> str:
    """One node: department, id, online / offline / revoked, last heartbeat."""
    if n.revoked:
        state = t(lang, "已吊销", "revoked")
    elif n.connected:
        state = t(lang, "在线", "online")
    else:
        seen = when(n.last_seen_at, zone, lang)
        state = t(lang, f"离线（最后心跳 {seen}）", f"offline (last heartbeat {seen})")
    return f"{n.department} {n.node_id} {state}"


def nodes_text(nodes: Sequence[NodeRecord], zone: ZoneInfo, lang: Lang) -> list[str]:
    """The node section of a status answer."""
    active = [n for n in nodes if not n.revoked]
    online = sum(1 for n in active if n.connected)
    if not nodes:
        return [t(lang, "还没有登记的节点。", "No node is enrolled yet.")]
    head = t(
        lang, f"节点（{online}/{len(active)} 在线）：", f"Nodes ({online}/{len(active)} online):"
    )
    return [head, *bullets([node_line(n, zone, lang) for n in nodes], lang)]


def job_line(j: JobRecord, lang: Lang) -> str:
    """One job: name, status and rounds done."""
    rounds = t(
        lang, f"{j.rounds_done}/{j.rounds_total}轮", f"{j.rounds_done}/{j.rounds_total} rounds"
    )
    return f"{j.name} {job_status(j.status, lang)} {rounds}"


def status_text(
    nodes: Sequence[NodeRecord], jobs: Sequence[JobRecord], zone: ZoneInfo, lang: Lang
) -> str:
    """The answer to /状态: nodes and live jobs."""
    live = [j for j in jobs if j.status in (JobStatus.RUNNING, JobStatus.PENDING)]
    lines = [t(lang, "联邦状态", "Federation status"), *nodes_text(nodes, zone, lang)]
    if live:
        lines.append(t(lang, "进行中的任务：", "Live jobs:"))
        lines += bullets([job_line(j, lang) for j in live], lang)
    else:
        lines.append(t(lang, "没有进行中的任务。", "No job is running."))
    return "\n".join(lines)


def jobs_text(jobs: Sequence[JobRecord], lang: Lang) -> str:
    """The answer to /任务: every job, newest first."""
    if not jobs:
        return t(lang, "还没有任务。", "There is no job yet.")
    newest = sorted(jobs, key=lambda j: j.created_at, reverse=True)
    title = t(lang, f"任务（共 {len(jobs)} 个）：", f"Jobs ({len(jobs)}):")
    return "\n".join([title, *bullets([job_line(j, lang) for j in newest], lang)])


def version_line(
    v: ModelVersion,
    zone: ZoneInfo,
    lang: Lang,
    metric: str | None,
    only: frozenset[str] | None = None,
) -> str:
    """One model version: id, round, time, digest, departments and a metric.

    With ``only`` (a department head's own departments) the line names only those
    departments and shows their own metric instead of the global one, as the REST API's
    partial view does.
    """
    names = {p.department for p in v.participants}
    if only is not None:
        names &= only
    depts = joined(sorted(names), lang)
    text = t(
        lang,
        f"{v.version_id} 第{v.round_no}轮 {when(v.created_at, zone, lang)} "
        f"sha256 {v.sha256[:12]} 参与：{depts}",
        f"{v.version_id} round {v.round_no} {when(v.created_at, zone, lang)} "
        f"sha256 {v.sha256[:12]} from: {depts}",
    )
    if metric is None:
        return text
    if only is None:
        value = metric_value(v.metrics, metric)
    else:
        own = [v.department_metrics[d] for d in sorted(names) if d in v.department_metrics]
        value = metric_value(own[0], metric) if len(own) == 1 else None
    if value is not None:
        text += f" {metric_label(metric, lang)} {format_value(metric, value)}"
    return text


def versions_text(
    versions: Sequence[ModelVersion],
    zone: ZoneInfo,
    lang: Lang,
    metric: str | None,
    only: frozenset[str] | None = None,
) -> str:
    """The answer to /版本: newest versions first (with ``only``: those departments' share)."""
    if only is not None:
        versions = [v for v in versions if any(p.department in only for p in v.participants)]
    if not versions:
        if only is not None:
            return t(
                lang,
                "你所在的部门还没有参与任何模型版本。",
                "Your department has not taken part in any model version yet.",
            )
        return t(lang, "还没有模型版本。", "There is no model version yet.")
    newest = sorted(versions, key=lambda v: v.created_at, reverse=True)
    title = t(lang, f"模型版本（共 {len(versions)} 个）：", f"Model versions ({len(versions)}):")
    lines = [version_line(v, zone, lang, metric, only) for v in newest]
    return "\n".join([title, *bullets(lines, lang)])


def audit_text(
    records: Sequence[AuditRecord], verify: VerifyResult, zone: ZoneInfo, lang: Lang
) -> str:
    """The answer to /审计: newest entries and whether the hash chain is intact."""
    if records:
        lines = [t(lang, "最近的审计记录：", "Latest audit entries:")]
        lines += bullets(
            [
                f"#{r.seq} {when(r.at, zone, lang)} {r.actor} {r.action} {r.resource} {r.outcome}"
                for r in records
            ],
            lang,
        )
    else:
        lines = [t(lang, "没有符合条件的审计记录。", "No audit entry matches.")]
    if verify.ok:
        lines.append(
            t(
                lang,
                f"审计链校验：完好（共 {verify.checked} 条）",
                f"Audit chain check: intact ({verify.checked} entries)",
            )
        )
    else:
        lines.append(
            t(
                lang,
                f"审计链校验失败：第 {verify.first_bad_seq} 条（{verify.problem}）",
                f"Audit chain check FAILED at entry {verify.first_bad_seq} ({verify.problem})",
            )
        )
    return "\n".join(lines)


def department_values(
    version: ModelVersion, metric: str, departments: Sequence[str] | None = None
) -> dict[str, float]:
    """Per department of ``version``, the value of ``metric`` (only ``departments`` if given)."""
    out: dict[str, float] = {}
    for dept, metrics in sorted(version.department_metrics.items()):
        if departments is not None and dept not in departments:
            continue
        value = metric_value(metrics, metric)
        if value is not None:
            out[dept] = value
    return out


def metric_lines(values: Mapping[str, float], metric: str, lang: Lang) -> list[str]:
    """One bullet per department: name and formatted value."""
    return bullets([f"{d} {format_value(metric, v)}" for d, v in values.items()], lang)


def progress_line(
    job: JobRecord, latest: ModelVersion | None, lang: Lang, metric: str | None
) -> str:
    """How far one job got, with its newest version and overall metric."""
    text = t(
        lang,
        f"任务「{job.name}」{job_status(job.status, lang)}：已完成 {job.rounds_done}/"
        f"{job.rounds_total} 轮",
        f"Job '{job.name}' {job_status(job.status, lang)}: {job.rounds_done}/"
        f"{job.rounds_total} rounds done",
    )
    if latest is not None:
        text += t(lang, f"，最新模型 {latest.version_id}", f", latest model {latest.version_id}")
        value = None if metric is None else metric_value(latest.metrics, metric)
        if metric is not None and value is not None:
            label = metric_label(metric, lang)
            text += t(
                lang,
                f"，{label} {format_value(metric, value)}",
                f", {label} {format_value(metric, value)}",
            )
    return text
