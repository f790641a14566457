"""Chat notification texts in Chinese (default) or English, as plain text or WeCom markdown."""

from __future__ import annotations

import math
from enum import StrEnum

from clawfed.chat.nlu.commands import COMMANDS, CommandName
from clawfed.chat.nlu.lang import Lang as Lang  # re-exported: templates are chosen by Lang
from clawfed.chat.nlu.lexicon import default_lexicon
from clawfed.chat.notices import (
    Anomaly,
    ApprovalRequested,
    JobStarted,
    MetricChange,
    MetricDropped,
    NodeBack,
    NodeJoined,
    NodeLost,
    Notice,
    RoundDeviations,
    RoundFinished,
    UpdateRefused,
    VersionPublished,
)
from clawfed.core.errors import RejectReason

_MD_SPECIAL = str.maketrans({"<": "＜", ">": "＞", "*": "∗", "`": "'", "[": "［", "]": "］"})
_REASONS = {
    RejectReason.UNKNOWN_TENSOR: ("含有未知参数", "unknown tensor"),
    RejectReason.MISSING_TENSOR: ("缺少参数", "missing tensor"),
    RejectReason.SHAPE_MISMATCH: ("参数形状不符", "tensor shape mismatch"),
    RejectReason.DTYPE_MISMATCH: ("参数类型不符", "tensor dtype mismatch"),
    RejectReason.NON_FINITE: ("含非有限数值（NaN/Inf）", "non-finite values (NaN/Inf)"),
    RejectReason.DIGEST_MISMATCH: ("校验和不符", "digest mismatch"),
    RejectReason.TRUNCATED: ("数据不完整", "truncated payload"),
    RejectReason.OVERSIZE: ("数据超出大小限制", "payload too large"),
    RejectReason.BAD_CHUNK: ("分块错误", "bad chunk"),
    RejectReason.BAD_HEADER: ("头信息错误", "bad header"),
    RejectReason.BAD_SAMPLE_COUNT: ("样本数无效", "invalid sample count"),
    RejectReason.NODE_ERROR: ("节点本地出错", "error on the node"),
}


class Fmt(StrEnum):
    """Output format: plain text, or WeCom markdown (bold title, quoted lines, colours)."""

    TEXT = "text"
    MARKDOWN = "markdown"


_ACTIONS = {
    "kept": ("仅标记，仍计入聚合", "only flagged, still aggregated"),
    "downweighted": ("已按策略降权", "down-weighted by policy"),
    "rejected": ("已按策略排除", "excluded by policy"),
}


class _Out:
    """Builds one message in a language and format: title plus lines."""

    def __init__(self, lang: Lang, fmt: Fmt) -> None:
        self.zh = lang is Lang.ZH
        self.md = fmt is Fmt.MARKDOWN

    def v(self, value: object) -> str:
        """A value from outside (name, id, reason): escaped in markdown."""
        text = str(value)
        return text.translate(_MD_SPECIAL) if self.md else text

    def color(self, text: str, color: str) -> str:
        return f'<font color="{color}">{text}</font>' if self.md else text

    def job(self, job: str) -> str:
        return f"「{self.v(job)}」" if self.zh else f"'{self.v(job)}'"

    def t(self, zh: str, en: str) -> str:
        return zh if self.zh else en

    def build(self, title: str, lines: list[str]) -> str:
        if self.md:
            return "\n".join([f"**{title}**", *(f"> {line}" for line in lines)])
        return "\n".join([title, *lines])


def _percent(x: float) -> str:
    return f"{x:.1f}%"


def _value(info_ratio: bool, v: float) -> str:
    if info_ratio:
        return _percent(v * 100)
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4g}"


def _duration(seconds: float, zh: bool) -> str:
    s = max(0, round(seconds))
    d, rem = divmod(s, 86400)
    h, rem = divmod(rem, 3600)
    m, sec = divmod(rem, 60)
    units = [(d, "天", "d"), (h, "小时", "h"), (m, "分钟", "min")] if s >= 60 else []
    parts = [f"{n}{zu}" if zh else f"{n} {eu}" for n, zu, eu in units if n][:2]
    return (" " if not zh else "").join(parts) or (f"{sec}秒" if zh else f"{sec} s")


def change_phrase(c: MetricChange, lang: Lang = Lang.ZH, fmt: Fmt = Fmt.TEXT) -> str:
    """Say how a metric moved: "准确率提升2.3%（现为91.2%）", "loss down 4.0% (now 0.24)".

    One decimal; "持平" / "unchanged" when the change rounds to 0.0. Markdown colours the
    move green when it is good for the metric, orange when bad.
    """
    o = _Out(lang, fmt)
    info = default_lexicon().find_metric(c.metric)
    name = info.name(lang) if info else o.v(c.metric)
    ratio = info.ratio if info else False
    higher_good = info.higher_is_better if info else True
    now = _value(ratio, c.value)
    if c.previous is None:
        return f"{name}{now}" if o.zh else f"{name} {now}"
    if ratio:
        pct = (c.value - c.previous) * 100
    elif c.previous != 0:
        pct = (c.value - c.previous) / abs(c.previous) * 100
    else:
        pct = math.copysign(math.inf, c.value) if c.value else 0.0
    amount = "" if math.isinf(pct) else _percent(abs(pct))
    if round(abs(pct), 1) == 0:
        return o.t(f"{name}持平（现为{now}）", f"{name} unchanged (now {now})")
    up = pct > 0
    if o.zh:
        word = ("提升" if higher_good else "上升") if up else "下降"
        moved = f"{word}{amount}"
    else:
        moved = f"{'up' if up else 'down'} {amount}".strip()
    moved = o.color(moved, "info" if up == higher_good else "warning")
    return o.t(f"{name}{moved}（现为{now}）", f"{name} {moved} (now {now})")


def job_started(n: JobStarted, lang: Lang = Lang.ZH, fmt: Fmt = Fmt.TEXT) -> str:
    """Job started: which departments take part and how many rounds are planned."""
    o = _Out(lang, fmt)
    depts = ("、" if o.zh else ", ").join(o.v(d) for d in n.departments)
    title = o.t(f"任务{o.job(n.job)}开始训练", f"Job {o.job(n.job)} started training")
    return o.build(
        title,
        [
            o.t(
                f"参与部门（{len(n.departments)}个）：{depts}",
                f"Departments ({len(n.departments)}): {depts}",
            ),
            o.t(f"计划轮数：{n.rounds}", f"Rounds planned: {n.rounds}"),
        ],
    )


def round_finished(n: RoundFinished, lang: Lang = Lang.ZH, fmt: Fmt = Fmt.TEXT) -> str:
    """Round finished: per department, its metric and the change since the last round."""
    o = _Out(lang, fmt)
    of = f"{n.round}/{n.total_rounds}" if n.total_rounds else str(n.round)
    title = o.t(f"任务{o.job(n.job)}第{of}轮训练完成", f"Job {o.job(n.job)}: round {of} finished")
    lines = [
        o.t(
            f"{o.v(c.department)}本轮训练完成，{change_phrase(c, lang, fmt)}",
            f"{o.v(c.department)}: {change_phrase(c, lang, fmt)}",
        )
        for c in n.results
    ]
    return o.build(title, lines)


def node_joined(n: NodeJoined, lang: Lang = Lang.ZH, fmt: Fmt = Fmt.TEXT) -> str:
    """A department's node joined the federation."""
    o = _Out(lang, fmt)
    title = o.t(f"{o.v(n.department)}节点已加入联邦", f"{o.v(n.department)} node joined")
    return o.build(title, [o.t(f"节点：{o.v(n.node_id)}", f"Node: {o.v(n.node_id)}")])


def node_lost(n: NodeLost, lang: Lang = Lang.ZH, fmt: Fmt = Fmt.TEXT) -> str:
    """A department's node stopped answering."""
    o = _Out(lang, fmt)
    title = o.color(
        o.t(f"{o.v(n.department)}节点已失联", f"{o.v(n.department)} node lost"), "warning"
    )
    lines = [o.t(f"节点：{o.v(n.node_id)}", f"Node: {o.v(n.node_id)}")]
    if n.silent_seconds is not None:
        ago = _duration(n.silent_seconds, o.zh)
        lines.append(o.t(f"最后心跳：{ago}前", f"Last heartbeat: {ago} ago"))
    return o.build(title, lines)


def node_back(n: NodeBack, lang: Lang = Lang.ZH, fmt: Fmt = Fmt.TEXT) -> str:
    """A lost node is back online."""
    o = _Out(lang, fmt)
    title = o.color(
        o.t(f"{o.v(n.department)}节点已恢复在线", f"{o.v(n.department)} node is back online"),
        "info",
    )
    lines = [o.t(f"节点：{o.v(n.node_id)}", f"Node: {o.v(n.node_id)}")]
    if n.offline_seconds is not None:
        away = _duration(n.offline_seconds, o.zh)
        lines.append(o.t(f"离线时长：{away}", f"Offline for: {away}"))
    return o.build(title, lines)


def version_published(n: VersionPublished, lang: Lang = Lang.ZH, fmt: Fmt = Fmt.TEXT) -> str:
    """A model version was published; one "质检部模型已同步" line per synced department."""
    o = _Out(lang, fmt)
    title = o.t(
        f"任务{o.job(n.job)}模型 v{n.version} 已发布",
        f"Job {o.job(n.job)}: model v{n.version} published",
    )
    lines = [f"sha256 {n.digest[:12]}"]
    lines += [o.t(f"{o.v(d)}模型已同步", f"{o.v(d)}: model synced") for d in n.synced]
    return o.build(title, lines)


def _reason(reason: str, o: _Out) -> str:
    try:
        zh, en = _REASONS[RejectReason(reason)]
    except ValueError:
        return o.v(reason)
    return o.t(zh, en)


def anomaly(n: Anomaly, lang: Lang = Lang.ZH, fmt: Fmt = Fmt.TEXT) -> str:
    """An anomaly (metric drop, rejected update, dropped node), naming department and reason."""
    o = _Out(lang, fmt)
    dept = o.v(n.department)
    if isinstance(n, RoundDeviations):
        return _deviations(n, o)
    if isinstance(n, MetricDropped):
        kind = o.t("指标下降", "metric drop")
        phrase = change_phrase(n.change, lang, fmt)
        line = o.t(f"{dept}{phrase}", f"{dept}: {phrase}")
    elif isinstance(n, UpdateRefused):
        kind = o.t("更新被拒绝", "update rejected")
        why = _reason(n.reason, o)
        line = o.t(f"{dept}提交的更新被拒绝，原因：{why}", f"{dept}: update rejected, {why}")
    else:
        kind = o.t("节点掉线", "node dropped")
        node = o.v(n.node_id)
        line = o.t(f"{dept}节点 {node} 掉线", f"{dept}: node {node} dropped out")
        if n.reason:
            line += o.t(f"，原因：{o.v(n.reason)}", f", {o.v(n.reason)}")
    where = o.t(f"任务{o.job(n.job)}第{n.round}轮", f"job {o.job(n.job)}, round {n.round}")
    title = o.color(o.t(f"异常：{where}{kind}", f"Anomaly: {kind} in {where}"), "warning")
    return o.build(title, [line])


def _deviations(n: RoundDeviations, o: _Out) -> str:
    where = o.t(f"任务{o.job(n.job)}第{n.round}轮", f"job {o.job(n.job)}, round {n.round}")
    title = o.color(
        o.t(f"异常：{where}整体指标下降", f"Anomaly: combined metric fell in {where}"), "warning"
    )
    lines = [
        o.t(
            f"{o.v(n.metric)}：{n.previous:.4f} → {n.current:.4f}",
            f"{o.v(n.metric)}: {n.previous:.4f} → {n.current:.4f}",
        )
    ]
    for s in n.suspects:
        zh, en = _ACTIONS.get(s.action, (s.action, s.action))
        lines.append(
            o.t(
                f"{o.v(s.department)}的更新偏离最大（余弦 {s.cosine:+.2f}，"
                f"范数 ×{s.norm_ratio:.2g}），处理：{o.v(zh)}",
                f"{o.v(s.department)}: update deviates most (cosine {s.cosine:+.2f}, norm "
                f"×{s.norm_ratio:.2g}); action: {o.v(en)}",
            )
        )
    return o.build(title, lines)


def approval_requested(n: ApprovalRequested, lang: Lang = Lang.ZH, fmt: Fmt = Fmt.TEXT) -> str:
    """Approval requested: who wants which department's data, for what; how to approve."""
    o = _Out(lang, fmt)
    spec = COMMANDS[CommandName.APPROVE]
    reply = f"/{spec.zh if o.zh else spec.en} {o.v(n.job)}"
    title = o.t(f"审批请求：任务{o.job(n.job)}", f"Approval requested: job {o.job(n.job)}")
    lines = [
        o.t(
            f"{o.v(n.requester)}申请使用{o.v(n.department)}的数据",
            f"{o.v(n.requester)} asks to use data of {o.v(n.department)}",
        ),
        o.t(f"用途：{o.v(n.purpose)}", f"Purpose: {o.v(n.purpose)}"),
        o.t(f"部门负责人请回复 {reply} 以同意", f"Department head: reply {reply} to approve"),
    ]
    return o.build(title, lines)


def render(n: Notice, lang: Lang = Lang.ZH, fmt: Fmt = Fmt.TEXT) -> str:
    """Render any notice with the function made for its type."""
    if isinstance(n, JobStarted):
        return job_started(n, lang, fmt)
    if isinstance(n, RoundFinished):
        return round_finished(n, lang, fmt)
    if isinstance(n, NodeJoined):
        return node_joined(n, lang, fmt)
    if isinstance(n, NodeLost):
        return node_lost(n, lang, fmt)
    if isinstance(n, NodeBack):
        return node_back(n, lang, fmt)
    if isinstance(n, VersionPublished):
        return version_published(n, lang, fmt)
    if isinstance(n, ApprovalRequested):
        return approval_requested(n, lang, fmt)
    return anomaly(n, lang, fmt)
