"""Answering chat commands and questions from the store: text now, or a chart to draw later."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import date, datetime
from zoneinfo import ZoneInfo

from clawfed.chat.nlu import (
    Command,
    CommandName,
    CommandParseError,
    Intent,
    IntentParser,
    Lang,
    Parsed,
    detect_lang,
    help_reply,
    not_understood_reply,
    understand,
    usage,
)
from clawfed.chat.nlu.timerange import TimeRange
from clawfed.chat.service.access import AccessControl, Asker
from clawfed.chat.service.config import RegionQuerySettings
from clawfed.chat.service.gate import Need, need_of
from clawfed.chat.service.insights import Insights
from clawfed.chat.service.regional import ALL, RegionalAnswers, RegionView
from clawfed.chat.service.replies import Answer, TextAnswer
from clawfed.chat.service.store import ChatStore
from clawfed.chat.service.views import (
    audit_text,
    jobs_text,
    nodes_text,
    status_text,
    t,
    versions_text,
)
from clawfed.chat.service.vocab import department_matches, pick_metric
from clawfed.core.errors import ClawfedError
from clawfed.governance.approvals import ApprovalBook
from clawfed.governance.audit import AuditLog
from clawfed.governance.policy import Role

CHART_WORDS = ("图", "趋势", "曲线", "走势", "chart", "plot", "graph", "trend", "curve")
"""Words that turn a metric question into a chart (every chart is answered asynchronously)."""
AUDIT_LINES = 10


class Answerer:
    """Reads the store to answer what employees type to the WeCom application.

    Parameters
    ----------
    store
        Read side of the governance store.
    zone
        Time zone dates are read and shown in.
    today
        Today's date (for "上周" and the like); the current date in ``zone`` by default.
    parser
        The question parser (the shared default one when omitted).
    access
        Who may ask what (see :meth:`reply`); None answers everyone everything.
    regional
        Federated per-region answers (its ``ask`` is attached by the coordinator).
    """

    def __init__(
        self,
        store: ChatStore,
        zone: ZoneInfo,
        *,
        today: Callable[[], date] | None = None,
        parser: IntentParser | None = None,
        access: AccessControl | None = None,
        regional: RegionalAnswers | None = None,
    ) -> None:
        self._store = store
        self._zone = zone
        self._today = today or (lambda: datetime.now(zone).date())
        self._parser = parser
        self.insights = Insights(store, zone)
        self.access = access
        self.regional = regional or RegionalAnswers(store, RegionQuerySettings())

    def reply(self, sender: str, text: str) -> Answer:
        """Answer ``sender``'s message if the policy lets them ask it; audit either way.

        Without access control this is :meth:`answer`. With it, the sender is looked up
        (store, config, WeCom), the message's action and resource are decided by
        ``governance.policy`` and written to the audit chain with the question; a refusal
        says why, and an allowed answer shows only what the role may see (a department
        head: their own department; an employee: model results).
        """
        if self.access is None:
            return self.answer(text)
        asker = self.access.who(sender)
        lang = detect_lang(text)
        try:
            understood = understand(text, today=self._today(), parser=self._parser)
        except CommandParseError as exc:
            return TextAnswer(str(exc))
        known = sorted({n.department for n in self._store.nodes()})
        region_job = None
        if isinstance(understood, Parsed) and understood.intent is Intent.COMPARE:
            if understood.slots.regions:
                found = self.regional.job(understood.slots.job)
                region_job = None if isinstance(found, str) else found.job_id
        need = need_of(understood, asker.user, known, region_job)
        decision = self.access.decide(asker, need.action, need.resource, text)
        if not decision.allowed:
            return TextAnswer(
                t(
                    lang,
                    f"抱歉，你无权进行此操作（已记录审计）：{decision.reason}",
                    f"Sorry, you may not do this (audited): {decision.reason}",
                )
            )
        if isinstance(understood, Command):
            if understood.name is CommandName.APPROVE:
                return self._approve(asker, understood.job, understood.purpose, lang)
            if understood.name is CommandName.STATUS and _head(asker):
                return self._own_status(need, lang)
            if understood.name is CommandName.VERSIONS and _head(asker):
                return self.versions(understood.job, lang, frozenset(need.resource.departments))
            return self._command(understood)
        if understood.intent is Intent.APPROVAL:
            return self._approve(asker, understood.slots.job, None, lang)
        if understood.intent is Intent.LIST_VERSIONS and _head(asker):
            mine = frozenset(need.resource.departments)
            return self.versions(understood.slots.job, lang, mine)
        scoped = understood
        if _head(asker) and not understood.slots.departments:
            own = tuple(sorted(need.resource.departments))
            scoped = replace(understood, slots=replace(understood.slots, departments=own))
        return self._question(scoped, lang, text.lower(), need.view)

    def _own_status(self, need: Need, lang: Lang) -> TextAnswer:
        nodes = [n for n in self._store.nodes() if n.department in need.resource.departments]
        return TextAnswer("\n".join(nodes_text(nodes, self._zone, lang)))

    def _approve(
        self, asker: Asker, job_name: str | None, purpose: str | None, lang: Lang
    ) -> TextAnswer:
        """A department head approves their department's data for a job, from chat."""
        user = asker.user
        if user is None or user.department is None or job_name is None:
            return TextAnswer(usage(CommandName.APPROVE, lang))
        book = ApprovalBook(self._store.db, AuditLog(self._store.db))
        try:
            wanted = book.get(job_name, user.department)
        except ClawfedError:
            return TextAnswer(
                t(
                    lang,
                    f"任务「{job_name}」没有请求使用{user.department}的数据。",
                    f"Job '{job_name}' has not asked to use {user.department}'s data.",
                )
            )
        if purpose is None:
            return TextAnswer(
                t(
                    lang,
                    f"任务「{job_name}」请求使用{user.department}的数据，用途：{wanted.purpose}。"
                    f"同意请发送：/批准 {job_name} {wanted.purpose}",
                    f"Job '{job_name}' asks to use {user.department}'s data for: "
                    f"{wanted.purpose}. To approve, send: /approve {job_name} {wanted.purpose}",
                )
            )
        try:
            done = book.approve(user, job_name, user.department, purpose)
        except ClawfedError as exc:
            return TextAnswer(t(lang, f"未能批准：{exc}", f"Not approved: {exc}"))
        return TextAnswer(
            t(
                lang,
                f"已批准：{done.department}的数据可用于任务「{done.job_id}」，用途：{done.purpose}。",
                f"Approved: {done.department}'s data may be used by job '{done.job_id}' for "
                f"{done.purpose}.",
            )
        )

    def answer(self, text: str) -> Answer:
        """Answer one message: a structured command or a free question."""
        try:
            understood = understand(text, today=self._today(), parser=self._parser)
        except CommandParseError as exc:
            return TextAnswer(str(exc))
        if isinstance(understood, Command):
            return self._command(understood)
        return self._question(understood, detect_lang(text), text.lower())

    # ---- commands -----------------------------------------------------------------------
    def _command(self, c: Command) -> Answer:
        lang = c.lang
        if c.name is CommandName.STATUS:
            return self.status(lang)
        if c.name is CommandName.JOBS:
            return TextAnswer(jobs_text(self._store.jobs(), lang))
        if c.name is CommandName.VERSIONS:
            return self.versions(c.job, lang)
        if c.name is CommandName.AUDIT:
            return self.audit(lang)
        if c.name is CommandName.TRAIN:
            return self.train(c.job, lang)
        if c.name is CommandName.APPROVE:
            return self.approve(c.job, c.purpose, lang)
        if c.topic is not None:
            return TextAnswer(usage(c.topic, lang))
        return TextAnswer(help_reply(lang))

    def status(self, lang: Lang) -> TextAnswer:
        """Nodes and live jobs."""
        return TextAnswer(status_text(self._store.nodes(), self._store.jobs(), self._zone, lang))

    def versions(
        self, job_name: str | None, lang: Lang, only: frozenset[str] | None = None
    ) -> TextAnswer:
        """Model versions, of one job if named; with ``only``, as those departments see them."""
        if job_name is None:
            versions = self._store.versions()
        else:
            job = self.insights.job(job_name)
            if job is None:
                return TextAnswer(self.insights.no_job(job_name, lang))
            versions = self._store.versions(job.job_id)
        if only is None:
            metric = pick_metric({m for v in versions for m in v.metrics})
        else:
            metric = pick_metric(
                {m for v in versions for d in only for m in v.department_metrics.get(d, {})}
            )
        return TextAnswer(versions_text(versions, self._zone, lang, metric, only))

    def audit(
        self, lang: Lang, department: str | None = None, since: TimeRange | None = None
    ) -> TextAnswer:
        """The newest audit entries (of a lexicon department, since a date) and chain check."""
        start = None if since is None else datetime.combine(since.start, datetime.min.time())
        records = self._store.audit(
            AUDIT_LINES if department is None else 500,
            since=None if start is None else start.replace(tzinfo=self._zone),
        )
        if department is not None:
            records = [
                r for r in records if any(department_matches(d, department) for d in r.departments)
            ][:AUDIT_LINES]
        return TextAnswer(audit_text(records, self._store.verify_audit(), self._zone, lang))

    def train(self, job_name: str | None, lang: Lang) -> TextAnswer:
        """Starting training is an admin action: say so, and what was asked."""
        job = job_name or "?"
        return TextAnswer(
            t(
                lang,
                "训练任务需通过协调器的管理接口提交（例如 clawfed job submit 任务文件.yaml），"
                f"本版本不能在聊天中启动训练。\n收到的请求：训练任务「{job}」。",
                "Jobs are started through the coordinator's admin API (e.g. clawfed job submit "
                f"job.yaml); this version cannot start training from chat.\nRequested: train "
                f"job '{job}'.",
            )
        )

    def approve(self, job_name: str | None, purpose: str | None, lang: Lang) -> TextAnswer:
        """Approvals are not enabled yet: say so plainly, and what was asked."""
        job = job_name or "?"
        why = purpose or t(lang, "（未写明）", "(not given)")
        return TextAnswer(
            t(
                lang,
                "本版本未启用审批流程（approval workflow not enabled in this version），"
                "聊天中的批准不会生效。\n"
                f"收到的请求：批准本部门数据用于任务「{job}」，用途：{why}。"
                "请联系数据管理员。",
                "Approval workflow not enabled in this version: an approval in chat has no "
                f"effect.\nRequested: approve your department's data for job '{job}', "
                f"purpose: {why}. Please contact the data admin.",
            )
        )

    # ---- questions ----------------------------------------------------------------------
    def _question(self, p: Parsed, lang: Lang, lowered: str, view: RegionView = ALL) -> Answer:
        s = p.slots
        if p.intent is Intent.TRAINING_PROGRESS:
            return self.insights.progress(s.job, lang)
        if p.intent is Intent.METRIC_QUERY:
            chart = any(w in lowered for w in CHART_WORDS)
            return self.insights.metric(
                s.job, s.metric, s.departments, s.time_range, lang, chart=chart
            )
        if p.intent is Intent.CONTRIBUTION_RANKING:
            return self.insights.ranking(s.time_range, lang)
        if p.intent is Intent.COMPARE:
            if s.regions:
                job = self.regional.job(s.job)
                if isinstance(job, str):
                    return self.insights.regions(s.regions, s.metric, s.time_range, lang)
                today = self._today()
                return self.regional.answer(job, s.regions, s.time_range, today, lang, view)
            return self.insights.compare(s.job, s.metric, s.departments, s.time_range, lang)
        if p.intent is Intent.NODE_STATUS:
            nodes = self._store.nodes()
            if s.departments:
                nodes = [
                    n
                    for n in nodes
                    if any(department_matches(n.department, d) for d in s.departments)
                ]
                if not nodes:
                    return TextAnswer(t(lang, "没有该部门的节点。", "That department has no node."))
            return TextAnswer("\n".join(nodes_text(nodes, self._zone, lang)))
        if p.intent is Intent.LIST_VERSIONS:
            return self.versions(s.job, lang)
        if p.intent is Intent.LIST_JOBS:
            return TextAnswer(jobs_text(self._store.jobs(), lang))
        if p.intent is Intent.AUDIT_QUERY:
            return self.audit(lang, s.department, s.time_range)
        if p.intent is Intent.START_TRAINING:
            return self.train(s.job, lang)
        if p.intent is Intent.APPROVAL:
            return self.approve(s.job, None, lang)
        if p.intent is Intent.HELP:
            return TextAnswer(help_reply(lang))
        return TextAnswer(not_understood_reply(lang))


def _head(asker: Asker) -> bool:
    return asker.user is not None and asker.user.role is Role.DEPARTMENT_HEAD
