"""Per-region questions answered by a federated query: markdown text plus a labelled chart."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from clawfed.chat.charts import GroupBar
from clawfed.chat.nlu.lang import Lang
from clawfed.chat.nlu.timerange import TimeRange
from clawfed.chat.service.config import RegionQuerySettings
from clawfed.chat.service.replies import Answer, ChartAnswer, GroupedBarChart, TextAnswer, ack
from clawfed.chat.service.store import ChatStore
from clawfed.chat.service.views import joined, span, t
from clawfed.chat.service.vocab import region_label
from clawfed.coordinator.jobspec import parse_job
from clawfed.coordinator.model_spec import REGRESSION_MODELS
from clawfed.coordinator.query import ErrorQuery, GroupError, QueryResult
from clawfed.core.errors import ClawfedError
from clawfed.governance.jobs import JobRecord

_log = logging.getLogger(__name__)

#: Runs a federated query and waits for its merged answer.
RegionAsk = Callable[[ErrorQuery], QueryResult]


@dataclass(frozen=True)
class RegionView:
    """What of an answer someone may see: departments' cells (None: all) and the totals."""

    departments: frozenset[str] | None
    totals: bool


ALL = RegionView(None, True)


def last_month(today: date) -> TimeRange:
    """The calendar month before ``today``'s."""
    end = today.replace(day=1) - timedelta(days=1)
    return TimeRange(end.replace(day=1), end, "last_month")


def regression_job(store: ChatStore, name: str | None) -> JobRecord | str:
    """The job to ask: the one named, else the newest trained regression job (or why none)."""
    jobs = store.jobs()
    if name is not None:
        found = [j for j in jobs if j.name.lower() == name.lower() or j.job_id == name]
        if not found:
            return f"没有名为「{name}」的任务。"
        return found[0]
    trained = []
    for job in jobs:
        try:
            spec = parse_job(job.spec_yaml, source=f"job {job.job_id}")
        except ClawfedError:
            continue
        if spec.model.name in REGRESSION_MODELS and job.rounds_done > 0:
            trained.append(job)
    if not trained:
        return "还没有训练过的预测（回归）任务，无法计算预测偏差。"
    return max(trained, key=lambda j: j.updated_at)


def _pct(cell: GroupError) -> str:
    pct = cell.bias_pct
    return "" if pct is None else f"（{pct * 100:+.1f}%）"


def _cell_line(cell: GroupError, lang: Lang) -> str:
    return t(
        lang,
        f"{cell.department}：偏差 {cell.bias:+.1f}{_pct(cell)}，MAE {cell.mae:.1f}，{cell.rows} 行",
        f"{cell.department}: bias {cell.bias:+.1f}{_pct(cell)}, MAE {cell.mae:.1f}, "
        f"{cell.rows} rows",
    )


def render_result(
    result: QueryResult, view: RegionView, lang: Lang
) -> tuple[str, tuple[GroupBar, ...]]:
    """The answer's markdown text and the chart's bars, limited to ``view``."""
    q = result.query
    shown = [
        c for c in result.cells if view.departments is None or c.department in view.departments
    ]
    period = span(TimeRange(q.start, q.end, "period"), lang)
    lines = [
        t(
            lang,
            f"**{period} 各区域销量预测偏差**（模型 {result.version_id}，偏差 = 预测 − 实际）",
            f"**Sales forecast bias by region, {period}** (model {result.version_id}, "
            "bias = forecast − actual)",
        )
    ]
    bars: list[GroupBar] = []
    everyone = t(lang, "全部部门", "all departments")
    for group in q.groups:
        total = next((c for c in result.totals if c.group == group), None)
        mine = [c for c in shown if c.group == group]
        if view.totals and total is not None:
            lines.append(
                t(
                    lang,
                    f"> **{group}**：偏差 {total.bias:+.1f}{_pct(total)}，MAE {total.mae:.1f}，"
                    f"RMSE {total.rmse:.1f}，共 {total.rows} 行",
                    f"> **{group}**: bias {total.bias:+.1f}{_pct(total)}, MAE {total.mae:.1f}, "
                    f"RMSE {total.rmse:.1f}, {total.rows} rows",
                )
            )
            if view.departments is not None and not view.departments:
                bars.append(GroupBar(group, everyone, total.bias))
        elif not mine:
            lines.append(
                t(lang, f"> **{group}**：无可显示的数据", f"> **{group}**: nothing to show")
            )
        else:
            lines.append(f"> **{group}**")
        for cell in mine:
            lines.append(f">  · {_cell_line(cell, lang)}")
            bars.append(GroupBar(group, str(cell.department), cell.bias))
    held = [
        s for s in result.suppressed if view.departments is None or s.department in view.departments
    ]
    if held:
        names = joined([f"{s.department}·{s.group}" for s in held], lang)
        lines.append(
            t(
                lang,
                f"已隐藏：{names}（行数少于 k={q.min_group_rows}，节点不返回其聚合值）",
                f"Held back: {names} (fewer than k={q.min_group_rows} rows; the nodes do not "
                "return their aggregates)",
            )
        )
    if result.missing and view.departments is None:
        lines.append(
            t(
                lang,
                f"未回应：{joined(sorted(result.missing), lang)}",
                f"No answer from: {joined(sorted(result.missing), lang)}",
            )
        )
    return "\n".join(lines), tuple(bars)


class RegionalAnswers:
    """Answers "对比下华东和华南区域上月销量预测偏差" with a federated query.

    Parameters
    ----------
    store
        Read side of the store (which jobs exist).
    settings
        Columns and minimum group size of the queries.
    ask
        Runs the query on the coordinator (None: this chat is not attached to one).
    """

    def __init__(
        self, store: ChatStore, settings: RegionQuerySettings, ask: RegionAsk | None = None
    ) -> None:
        self._store = store
        self._settings = settings
        self.ask = ask

    def job(self, name: str | None) -> JobRecord | str:
        """The job a regional question is about (or why there is none)."""
        return regression_job(self._store, name)

    def answer(
        self,
        job: JobRecord,
        regions: Sequence[str],
        when: TimeRange | None,
        today: date,
        lang: Lang,
        view: RegionView = ALL,
    ) -> Answer:
        """Run the query for ``regions`` (lexicon keys) over ``when`` (default: last month)."""
        if self.ask is None:
            return TextAnswer(
                t(
                    lang,
                    "区域对比需要联邦查询，而本聊天服务没有连接到运行中的协调器。",
                    "Comparing regions needs a federated query; this chat is not attached to a "
                    "running coordinator.",
                )
            )
        period = when or last_month(today)
        groups = tuple(region_label(r, Lang.ZH) for r in regions)
        s = self._settings
        query = ErrorQuery(
            job.job_id,
            groups,
            period.start,
            period.end,
            group_column=s.group_column,
            period_column=s.period_column,
            min_group_rows=s.k_for(job.job_id),
            deadline_s=s.timeout_s,
        )
        try:
            result = self.ask(query)
        except ClawfedError as exc:
            _log.warning("chat: federated query on %s failed: %s", job.job_id, exc)
            return TextAnswer(t(lang, f"联邦查询失败：{exc}", f"The federated query failed: {exc}"))
        text, bars = render_result(result, view, lang)
        if not bars:
            return TextAnswer(text)
        title = t(
            lang,
            f"{joined(list(groups), lang)} 销量预测偏差（按部门）",
            f"Sales forecast bias by region and department: {', '.join(groups)}",
        )
        y = t(lang, "平均偏差（预测 − 实际）", "mean bias (forecast − actual)")
        return ChartAnswer(ack(lang), GroupedBarChart(title, y, bars), text, lang)
