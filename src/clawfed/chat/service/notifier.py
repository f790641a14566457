"""Turning coordinator events into chat notices, rendered and queued in the outbox."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from clawfed.chat.channel import OutgoingMessage
from clawfed.chat.nlu.lang import Lang
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
    RoundDeviations,
    RoundFinished,
    UpdateRefused,
    VersionPublished,
)
from clawfed.chat.outbox import Outbox
from clawfed.chat.service.config import ChatConfig, EventKind
from clawfed.chat.service.store import ChatStore
from clawfed.chat.service.vocab import higher_is_better, is_ratio, metric_value, pick_metric
from clawfed.chat.templates import Fmt, render
from clawfed.coordinator.jobspec import parse_job
from clawfed.coordinator.valuemap import value_change
from clawfed.core.errors import ClawfedError

_log = logging.getLogger(__name__)
_CODE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_VERSION = re.compile(r"^(?P<job>.+)@v(?P<n>[0-9]+)$")
_MD_SPECIAL = str.maketrans({"<": "＜", ">": "＞", "*": "∗", "`": "'", "[": "［", "]": "］"})


class _Participant(Protocol):
    """What the notifier reads of a round report's participant."""

    @property
    def node_id(self) -> str: ...
    @property
    def department(self) -> str: ...
    @property
    def metrics(self) -> Mapping[str, float]: ...


class _Report(Protocol):
    """What the notifier reads of a ``RoundReport``."""

    @property
    def participants(self) -> Sequence[_Participant]: ...


@dataclass(frozen=True)
class PlainNotice:
    """A notice with fixed bilingual text (job finished, a round without known metrics)."""

    title_zh: str
    title_en: str
    lines_zh: tuple[str, ...] = ()
    lines_en: tuple[str, ...] = ()
    warning: bool = False

    def render(self, lang: Lang, fmt: Fmt) -> str:
        """The notice as text or WeCom markdown."""
        zh = lang is Lang.ZH
        title, lines = (self.title_zh, self.lines_zh) if zh else (self.title_en, self.lines_en)
        if fmt is Fmt.TEXT:
            return "\n".join([title, *lines])
        title, lines = title.translate(_MD_SPECIAL), tuple(x.translate(_MD_SPECIAL) for x in lines)
        if self.warning:
            title = f'<font color="warning">{title}</font>'
        return "\n".join([f"**{title}**", *(f"> {line}" for line in lines)])


@dataclass(frozen=True)
class ValuedNotice:
    """A notice followed by a line saying what the metric's change is worth."""

    inner: Notice | PlainNotice
    line_zh: str
    line_en: str

    def render(self, lang: Lang, fmt: Fmt) -> str:
        """The inner notice, then the value line (quoted in markdown)."""
        line = self.line_zh if lang is Lang.ZH else self.line_en
        if fmt is not Fmt.TEXT:
            line = "> " + line.translate(_MD_SPECIAL)
        inner = self.inner
        head = (
            inner.render(lang, fmt) if isinstance(inner, PlainNotice) else render(inner, lang, fmt)
        )
        return head + "\n" + line


AnyNotice = Notice | PlainNotice | ValuedNotice


def _code(reason: object) -> str:
    """A machine reason code, or "other": free text from a node never reaches chat."""
    text = str(reason).strip().lower()
    return text if _CODE.match(text) else "other"


def _worse(key: str, value: float, previous: float, threshold: float) -> bool:
    """Whether ``value`` is worse than ``previous`` by more than ``threshold``."""
    if is_ratio(key):
        drop = previous - value
    elif previous != 0:
        drop = (previous - value) / abs(previous)
    else:
        return False
    return (drop if higher_is_better(key) else -drop) > threshold


class Notifier:
    """Maps coordinator events (``Coordinator.events(kind, data)``) to chat notices.

    ``handle`` renders each notice in the configured language and queues one message per
    route in the outbox. It never raises and never waits on a chat service: the only I/O
    is the outbox insert (and a store read for version digests and unknown nodes).
    Messages carry department names, node and job ids, metric values and reason codes;
    free-text details from nodes are never forwarded.

    Parameters
    ----------
    config
        Language, routes and channels.
    outbox
        Where rendered messages are queued.
    store
        Read side of the store, for version digests and departments of unseen nodes.
    clock
        Monotonic seconds, for how long a node was offline.
    """

    def __init__(
        self,
        config: ChatConfig,
        outbox: Outbox,
        *,
        store: ChatStore | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._outbox = outbox
        self._store = store
        self._clock = clock
        self._lock = threading.Lock()
        self._departments: dict[str, str] = {}
        self._online: set[str] = set()
        self._lost_at: dict[str, float] = {}
        self._last: dict[tuple[str, str, str], float] = {}
        self._rounds_total: dict[str, int] = {}
        self._closed = False

    def close(self) -> None:
        """Ignore every later event (call before the coordinator drops its sessions)."""
        self._closed = True

    def handle(self, kind: str, data: Mapping[str, Any]) -> None:
        """Queue the notices for one coordinator event; errors are logged, never raised."""
        if self._closed:
            return
        try:
            notices = self.notices(kind, data)
        except Exception:
            _log.exception("chat notifier: cannot turn event %s into a notice", kind)
            return
        for event, notice in notices:
            self._route(event, notice)

    def _route(self, event: EventKind, notice: AnyNotice) -> None:
        lang = self._config.language
        for route in self._config.routes_for(event):
            try:
                markdown = self._config.channels[route.channel].markdown
                fmt = Fmt.MARKDOWN if markdown else Fmt.TEXT
                text = (
                    notice.render(lang, fmt)
                    if isinstance(notice, PlainNotice | ValuedNotice)
                    else render(notice, lang, fmt)
                )
                message = (
                    OutgoingMessage.markdown_message(text)
                    if markdown
                    else OutgoingMessage.text_message(text)
                )
                self._outbox.enqueue(route.channel, message, route.target)
            except Exception:
                _log.exception("chat notifier: cannot queue %s for %s", event, route.channel)

    # ---- events to notices --------------------------------------------------------------
    def notices(self, kind: str, data: Mapping[str, Any]) -> list[tuple[EventKind, AnyNotice]]:
        """The notices an event yields (updates the notifier's memory of nodes and metrics)."""
        with self._lock:
            if kind in ("node_joined", "node_replaced", "node_lost"):
                return self._node(kind, str(data["node_id"]), str(data.get("department") or ""))
            if kind == "job_started":
                return self._job_started(str(data["job_id"]), int(data["rounds"]))
            if kind == "round_completed":
                return self._round(data)
            if kind == "update_rejected":
                node = str(data["node_id"])
                refused = UpdateRefused(
                    str(data["job_id"]), self._dept(node), _code(data["reason"]), int(data["round"])
                )
                return [(EventKind.ANOMALY, refused)]
            if kind == "node_dropped":
                node = str(data["node_id"])
                dropped = NodeDropped(
                    str(data["job_id"]),
                    self._dept(node),
                    node,
                    int(data["round"]),
                    _code(data.get("reason", "other")),
                )
                return [(EventKind.ANOMALY, dropped)]
            if kind == "anomaly" and data.get("suspects"):
                return [(EventKind.ANOMALY, RoundDeviations.from_event(data))]
            if kind == "free_rider":
                return [(EventKind.ANOMALY, _free_rider(data))]
            if kind in ("job_completed", "job_failed"):
                return [(EventKind.JOB_FINISHED, self._job_finished(kind, data))]
            if kind == "approval_requested":
                notice = ApprovalRequested(
                    str(data["job_id"]),
                    str(data["department"]),
                    str(data["requester"]),
                    str(data["purpose"]),
                )
                return [(EventKind.APPROVAL_REQUESTED, notice)]
        _log.debug("chat notifier: no notice for event %s", kind)
        return []

    def _dept(self, node_id: str) -> str:
        known = self._departments.get(node_id)
        if known:
            return known
        if self._store is not None:
            try:
                department = self._store.node(node_id).department
            except ClawfedError:
                return node_id
            self._departments[node_id] = department
            return department
        return node_id

    def _node(self, kind: str, node_id: str, department: str) -> list[tuple[EventKind, AnyNotice]]:
        if department:
            self._departments[node_id] = department
        dept = self._dept(node_id)
        if kind == "node_lost":
            self._online.discard(node_id)
            self._lost_at[node_id] = self._clock()
            return [(EventKind.NODE_LOST, NodeLost(dept, node_id))]
        self._online.add(node_id)
        lost_at = self._lost_at.pop(node_id, None)
        if lost_at is not None:
            away = max(0.0, self._clock() - lost_at)
            return [(EventKind.NODE_BACK, NodeBack(dept, node_id, away))]
        if kind == "node_joined":
            return [(EventKind.NODE_JOINED, NodeJoined(dept, node_id))]
        return []

    def _job_started(self, job: str, rounds: int) -> list[tuple[EventKind, AnyNotice]]:
        self._rounds_total[job] = rounds
        departments = sorted({self._dept(n) for n in self._online})
        if not departments and self._store is not None:
            departments = sorted({n.department for n in self._store.nodes() if not n.revoked})
        if not departments:
            _log.info("chat notifier: job %s started before any node is known", job)
            return []
        return [(EventKind.JOB_STARTED, JobStarted(job, tuple(departments), rounds))]

    def _round(self, data: Mapping[str, Any]) -> list[tuple[EventKind, AnyNotice]]:
        job, round_no = str(data["job_id"]), int(data["round"])
        report: _Report = data["report"]
        people = sorted(report.participants, key=lambda p: (p.department or p.node_id, p.node_id))
        for p in people:
            if p.department:
                self._departments[p.node_id] = p.department
        key = pick_metric({name for p in people for name in p.metrics})
        out: list[tuple[EventKind, AnyNotice]] = []
        results: list[MetricChange] = []
        seen: set[str] = set()
        for p in people:
            dept = p.department or p.node_id
            value = None if key is None else metric_value(p.metrics, key)
            if key is None or value is None or dept in seen:
                continue
            seen.add(dept)
            previous = self._last.get((job, dept, key))
            if previous is None:
                previous = self._stored_previous(job, round_no, dept, key)
            try:
                change = MetricChange(dept, key, value, previous)
            except NoticeError as exc:
                _log.warning("chat notifier: skipping %s's %s: %s", dept, key, exc)
                continue
            self._last[(job, dept, key)] = value
            results.append(change)
            if previous is not None and _worse(
                key, value, previous, self._config.metric_drop_alert
            ):
                out.append((EventKind.ANOMALY, MetricDropped(job, change, round_no)))
        total = self._rounds_total.get(job)
        if results:
            finished: AnyNotice = RoundFinished(job, round_no, tuple(results), total)
        else:
            depts = "、".join(sorted({p.department or p.node_id for p in people}))
            of = f"{round_no}/{total}" if total else str(round_no)
            finished = PlainNotice(
                f"任务「{job}」第{of}轮训练完成",
                f"Job '{job}': round {of} finished",
                (f"参与部门：{depts}",),
                (f"Departments: {depts.replace('、', ', ')}",),
            )
        valued = self._valued(job, round_no, data["report"])
        if valued is not None:
            assert not isinstance(finished, ValuedNotice)
            finished = ValuedNotice(finished, *valued)
        out.insert(0, (EventKind.ROUND_COMPLETED, finished))
        version = self._version(job, data.get("version"))
        if version is not None:
            out.insert(1, (EventKind.VERSION_PUBLISHED, version))
        return out

    def _valued(self, job: str, round_no: int, report: object) -> tuple[str, str] | None:
        """What the change of the job's value-mapped metric since the last round is worth."""
        if self._store is None:
            return None
        after = getattr(report, "metrics", None)
        if not isinstance(after, Mapping):
            return None
        try:
            mapping = parse_job(self._store.job(job).spec_yaml, source=f"job {job}").value
            before = [v for v in self._store.versions(job) if v.round_no < round_no]
        except ClawfedError:
            return None
        if mapping is None or not before:
            return None
        change = value_change(mapping, before[-1].metrics, after)
        if change is None:
            return None
        return "业务价值：" + change.text(zh=True), "Business value: " + change.text(zh=False)

    def _stored_previous(self, job: str, round_no: int, dept: str, key: str) -> float | None:
        """The department's metric in the job's previous round, from the store (restarts)."""
        if self._store is None or round_no <= 1:
            return None
        try:
            versions = self._store.versions(job)
        except ClawfedError:
            return None
        before = [v for v in versions if v.round_no < round_no]
        if not before:
            return None
        metrics = before[-1].department_metrics.get(dept)
        return None if metrics is None else metric_value(metrics, key)

    def _version(self, job: str, version_id: object) -> VersionPublished | None:
        match = _VERSION.match(str(version_id or ""))
        if match is None or self._store is None:
            return None
        try:
            digest = self._store.version(str(version_id)).sha256
        except ClawfedError as exc:
            _log.warning("chat notifier: version %s not readable: %s", version_id, exc)
            return None
        return VersionPublished(job, int(match.group("n")), digest)

    def _job_finished(self, kind: str, data: Mapping[str, Any]) -> PlainNotice:
        job = str(data["job_id"])
        self._rounds_total.pop(job, None)
        if kind == "job_completed":
            version = str(data.get("version") or "—")
            return PlainNotice(
                f"任务「{job}」训练完成",
                f"Job '{job}' completed",
                (f"最终模型：{version}",),
                (f"Final model: {version}",),
            )
        return PlainNotice(
            f"任务「{job}」训练失败",
            f"Job '{job}' failed",
            (f"原因已记录在协调器中，用 clawfed job status {job} 查看",),
            (f"The reason is kept on the coordinator: run clawfed job status {job}",),
            warning=True,
        )


_FREE_RIDER_ZH = {"copy_global": "照抄全局模型", "noise": "只含噪声", "replay": "重放旧更新"}
_FREE_RIDER_EN = {
    "copy_global": "copies the global model",
    "noise": "is noise only",
    "replay": "replays an old update",
}
_POLICY_ZH = {"flag": "仅标记", "downweight": "已降权", "exclude": "已排除"}
_POLICY_EN = {"flag": "flagged only", "downweight": "down-weighted", "exclude": "excluded"}


def _free_rider(data: Mapping[str, Any]) -> PlainNotice:
    """The notice of a ``free_rider`` event: who, what the update looked like, what was done."""
    dept = str(data.get("department") or data["node_id"])
    kind, policy = str(data["kind"]), str(data.get("policy") or "flag")
    job, round_no, evidence = str(data["job_id"]), int(data["round"]), str(data["evidence"])
    what_zh, what_en = _FREE_RIDER_ZH.get(kind, kind), _FREE_RIDER_EN.get(kind, kind)
    return PlainNotice(
        f"异常：任务「{job}」第{round_no}轮，{dept}的更新疑似搭便车（{what_zh}）",
        f"Anomaly: job '{job}' round {round_no}, {dept}'s update {what_en}",
        (f"处理：{_POLICY_ZH.get(policy, policy)}", f"依据：{evidence}"),
        (f"Action: {_POLICY_EN.get(policy, policy)}", f"Evidence: {evidence}"),
        warning=True,
    )
