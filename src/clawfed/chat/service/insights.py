"""Answers about training results: progress, metrics, comparisons, contribution ranking."""

from __future__ import annotations

from collections.abc import Sequence
from zoneinfo import ZoneInfo

from clawfed.chat.charts import BarValue, LineSeries
from clawfed.chat.nlu.lang import Lang
from clawfed.chat.nlu.timerange import TimeRange
from clawfed.chat.service.replies import (
    Answer,
    BarChart,
    ChartAnswer,
    LineChart,
    TextAnswer,
    ack,
)
from clawfed.chat.service.store import ChatStore
from clawfed.chat.service.views import (
    bullets,
    department_values,
    joined,
    metric_lines,
    progress_line,
    span,
    t,
)
from clawfed.chat.service.vocab import (
    department_label,
    department_matches,
    format_value,
    is_ratio,
    metric_label,
    pick_metric,
    region_label,
)
from clawfed.core.errors import NotFoundError
from clawfed.governance.jobs import JobRecord, JobStatus
from clawfed.governance.registry import ModelVersion


class Insights:
    """Reads jobs and model versions to answer questions about training results.

    Parameters
    ----------
    store
        Read side of the governance store.
    zone
        Time zone that dates in questions and answers are in.
    """

    def __init__(self, store: ChatStore, zone: ZoneInfo) -> None:
        self._store = store
        self._zone = zone

    def job(self, name: str) -> JobRecord | None:
        """The job called ``name`` (case-insensitive), or None."""
        try:
            return self._store.job(name)
        except NotFoundError:
            wanted = name.lower()
            return next((j for j in self._store.jobs() if j.name.lower() == wanted), None)

    def no_job(self, name: str, lang: Lang) -> str:
        """The reply for an unknown job name, listing the jobs there are."""
        names = joined([j.name for j in self._store.jobs()], lang) or t(lang, "无", "none")
        return t(
            lang,
            f"没有名为「{name}」的任务。现有任务：{names}",
            f"There is no job named '{name}'. Jobs: {names}",
        )

    def _versions(
        self, job_name: str | None, when: TimeRange | None, lang: Lang
    ) -> tuple[JobRecord, list[ModelVersion]] | str:
        """The job asked about (or the latest trained one) and its versions in ``when``."""
        if job_name is not None:
            job = self.job(job_name)
            if job is None:
                return self.no_job(job_name, lang)
        else:
            trained = [j for j in self._store.jobs() if j.rounds_done > 0]
            if not trained:
                return t(lang, "还没有完成过训练轮次的任务。", "No job has finished a round yet.")
            job = max(trained, key=lambda j: j.updated_at)
        versions = self._store.versions(job.job_id)
        if when is not None:
            versions = [
                v
                for v in versions
                if when.start <= v.created_at.astimezone(self._zone).date() <= when.end
            ]
        if not versions:
            period = (
                ""
                if when is None
                else t(lang, f"在 {span(when, lang)} ", f" in {span(when, lang)}")
            )
            return t(
                lang,
                f"任务「{job.name}」{period}没有完成的训练轮次。",
                f"Job '{job.name}' has no finished round{period}.",
            )
        return job, versions

    def progress(self, job_name: str | None, lang: Lang) -> TextAnswer:
        """How far jobs got: the named one, else the live ones (else the newest)."""
        if job_name is not None:
            job = self.job(job_name)
            if job is None:
                return TextAnswer(self.no_job(job_name, lang))
            jobs = [job]
        else:
            jobs = self._store.jobs()
            live = [j for j in jobs if j.status in (JobStatus.RUNNING, JobStatus.PENDING)]
            jobs = live or sorted(jobs, key=lambda j: j.updated_at)[-3:]
        if not jobs:
            return TextAnswer(t(lang, "还没有任务。", "There is no job yet."))
        lines = []
        for job in jobs:
            versions = self._store.versions(job.job_id)
            latest = versions[-1] if versions else None
            metric = None if latest is None else pick_metric(latest.metrics)
            lines.append(progress_line(job, latest, lang, metric))
        return TextAnswer("\n".join(lines))

    def _metric_for(
        self, versions: Sequence[ModelVersion], wanted: str | None, lang: Lang
    ) -> tuple[str, str]:
        """The metric to report and a note when the one asked for is not recorded."""
        names = {m for v in versions for d in v.department_metrics.values() for m in d}
        names |= {m for v in versions for m in v.metrics}
        if wanted is not None and pick_metric(names, wanted) is not None:
            return wanted, ""
        chosen = pick_metric(names) or ""
        note = ""
        if wanted is not None:
            have = joined(
                sorted(
                    {metric_label(k, lang) for k in filter(None, (pick_metric([n]) for n in names))}
                ),
                lang,
            )
            note = t(
                lang,
                f"没有「{metric_label(wanted, lang)}」的记录（现有指标：{have or '无'}）。",
                f"No '{metric_label(wanted, lang)}' is recorded (recorded: {have or 'none'}).",
            )
        return chosen, note

    def _depts(self, version_depts: Sequence[str], keys: Sequence[str]) -> list[str] | None:
        if not keys:
            return None
        return [d for d in version_depts if any(department_matches(d, k) for k in keys)]

    def metric(
        self,
        job_name: str | None,
        wanted: str | None,
        departments: Sequence[str],
        when: TimeRange | None,
        lang: Lang,
        *,
        chart: bool = False,
    ) -> Answer:
        """A metric of the latest version per department, or (``chart``) its curve by round."""
        found = self._versions(job_name, when, lang)
        if isinstance(found, str):
            return TextAnswer(found)
        job, versions = found
        metric, note = self._metric_for(versions, wanted, lang)
        all_depts = sorted({d for v in versions for d in v.department_metrics})
        chosen = self._depts(all_depts, departments)
        if chosen is not None and not chosen:
            named = joined([department_label(d, lang) for d in departments], lang)
            return TextAnswer(
                t(
                    lang,
                    f"任务「{job.name}」没有 {named} 的训练记录。",
                    f"Job '{job.name}' has no record of {named}.",
                )
            )
        if not metric:
            return TextAnswer(note or t(lang, "没有记录指标。", "No metric is recorded."))
        label = metric_label(metric, lang)
        if chart:
            series = []
            for dept in chosen or all_depts:
                points = tuple(
                    (v.round_no, values[dept])
                    for v in versions
                    if dept in (values := department_values(v, metric, [dept]))
                )
                if points:
                    series.append(LineSeries(dept, points))
            if series:
                title = t(
                    lang,
                    f"任务「{job.name}」各部门{label}",
                    f"Job '{job.name}': {label} by department",
                )
                x = t(lang, "轮次", "round")
                caption = note + t(
                    lang, f"{title}（共 {len(versions)} 轮）", f"{title} ({len(versions)} rounds)"
                )
                return ChartAnswer(
                    ack(lang),
                    LineChart(title, label, x, tuple(series), is_ratio(metric)),
                    caption,
                    lang,
                )
        latest = versions[-1]
        values = department_values(latest, metric, chosen)
        head = t(
            lang,
            f"任务「{job.name}」模型 {latest.version_id}（第{latest.round_no}轮）的{label}：",
            f"Job '{job.name}', model {latest.version_id} (round {latest.round_no}), {label}:",
        )
        lines = [note + head if note else head, *metric_lines(values, metric, lang)]
        overall = latest.metrics
        if (
            chosen is None
            and (value := next((overall[n] for n in overall if pick_metric([n], metric)), None))
            is not None
        ):
            lines.append(
                t(
                    lang,
                    f"· 整体 {format_value(metric, value)}",
                    f"· overall {format_value(metric, value)}",
                )
            )
        if not values:
            lines.append(t(lang, "（各部门没有该指标的记录）", "(no department recorded it)"))
        return TextAnswer("\n".join(lines))

    def compare(
        self,
        job_name: str | None,
        wanted: str | None,
        departments: Sequence[str],
        when: TimeRange | None,
        lang: Lang,
    ) -> Answer:
        """Departments side by side on one metric of the latest version: a bar chart."""
        found = self._versions(job_name, when, lang)
        if isinstance(found, str):
            return TextAnswer(found)
        job, versions = found
        latest = versions[-1]
        metric, note = self._metric_for([latest], wanted, lang)
        chosen = self._depts(sorted(latest.department_metrics), departments)
        values = department_values(latest, metric, chosen) if metric else {}
        if not values:
            return TextAnswer(
                note
                + t(
                    lang,
                    f"模型 {latest.version_id} 没有可对比的部门指标。",
                    f"Model {latest.version_id} has no department metric to compare.",
                )
            )
        label = metric_label(metric, lang)
        title = t(
            lang,
            f"{latest.version_id} 各部门{label}对比",
            f"{latest.version_id}: {label} by department",
        )
        bars = tuple(BarValue(d, v) for d, v in values.items())
        caption = note + t(
            lang, f"{title}（第{latest.round_no}轮）", f"{title} (round {latest.round_no})"
        )
        return ChartAnswer(ack(lang), BarChart(title, label, bars, is_ratio(metric)), caption, lang)

    def regions(
        self, regions: Sequence[str], wanted: str | None, when: TimeRange | None, lang: Lang
    ) -> TextAnswer:
        """Regions are not in the store: say so, then show what it has for the period."""
        names = joined([region_label(r, lang) for r in regions], lang)
        lines = [
            t(
                lang,
                "没有区域销量预测数据：联邦的任务只记录各部门模型的训练指标，"
                f"没有按区域（{names}）划分的销量或预测偏差，无法对比。",
                "There is no regional sales forecast data: jobs record the training metrics "
                f"of each department's model, nothing per region ({names}), so this cannot "
                "be compared.",
            )
        ]
        period = t(lang, "全部时间", "all time") if when is None else span(when, lang)
        shown = 0
        for job in self._store.jobs():
            found = self._versions(job.name, when, lang)
            if isinstance(found, str):
                continue
            latest = found[1][-1]
            metric, note = self._metric_for([latest], wanted, lang)
            values = department_values(latest, metric, None) if metric else {}
            if values:
                if shown == 0:
                    lines.append(
                        t(
                            lang,
                            f"{period} 内各部门的模型指标：",
                            f"Department metrics in {period}:",
                        )
                    )
                shown += 1
                lines.append(
                    note
                    + t(
                        lang,
                        f"任务「{job.name}」{latest.version_id} 的{metric_label(metric, lang)}：",
                        f"Job '{job.name}' {latest.version_id}, {metric_label(metric, lang)}:",
                    )
                )
                lines += metric_lines(values, metric, lang)
        if shown == 0:
            lines.append(
                t(
                    lang,
                    f"{period} 内也没有完成的训练轮次。",
                    f"No round finished in {period} either.",
                )
            )
        return TextAnswer("\n".join(lines))

    def ranking(self, when: TimeRange | None, lang: Lang) -> TextAnswer:
        """Departments ranked by the samples they trained on (within ``when``)."""
        totals: dict[str, int] = {}
        rounds = 0
        for v in self._store.versions():
            if (
                when is not None
                and not when.start <= v.created_at.astimezone(self._zone).date() <= when.end
            ):
                continue
            rounds += 1
            for p in v.participants:
                totals[p.department] = totals.get(p.department, 0) + p.num_samples
        period = t(lang, "全部时间", "all time") if when is None else span(when, lang)
        if not totals:
            return TextAnswer(
                t(lang, f"{period} 内没有完成的训练轮次。", f"No round finished in {period}.")
            )
        ranked = sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))
        lines = [
            t(
                lang,
                f"{period} 各部门贡献（按参与训练的样本数，{rounds} 轮）：",
                f"Contribution by department in {period} (samples trained on, {rounds} rounds):",
            )
        ]
        lines += bullets([f"{i}. {d} {n:,}" for i, (d, n) in enumerate(ranked, 1)], lang)
        return TextAnswer("\n".join(lines))
