"""``clawfed demo``: departments train one model together for real, then compare models.

Only the data (``clawfed.data.scenarios``) and the machines (one) are not real: a CA, a
coordinator, node processes over mutual TLS, a local WeCom, the registry and the audit chain.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from clawfed.chat.fake_wecom import FakeWeCom, FakeWeComServer, serve_fake_wecom
from clawfed.chat.service import ChatService
from clawfed.chat.wecom_xml import parse_flat_xml
from clawfed.cli.chat_cmds import demo_chat_section
from clawfed.cli.common import console, err_console, setup_logging
from clawfed.cli.demo_support import free_port, fresh_folder, start_nodes, stop_processes
from clawfed.coordinator.config import save_settings
from clawfed.coordinator.jobspec import JobSpec, parse_job
from clawfed.coordinator.round_records import RoundReport
from clawfed.coordinator.server import Coordinator
from clawfed.coordinator.task_config import task_config
from clawfed.coordinator.workspace import Workspace, enroll_node, init_workspace
from clawfed.core import ConfigError, JobError, Metrics
from clawfed.data.scenarios import DEFAULT_FRAUD_ROWS, FRAUD_DEPARTMENTS, make_fraud_scenario
from clawfed.governance.audit import AuditLog
from clawfed.governance.policy import Role
from clawfed.governance.registry import ModelRegistry
from clawfed.governance.users import UserDirectory
from clawfed.node.learning_runner import LocalData

_EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
_ASKER = "zhangsan"
_ROUTED = ["job_started", "round_completed", "job_finished", "node_joined", "anomaly"]
#: Seed of the fraud demo's data. Over seeds the federated model gains about 0.05 ROC-AUC
#: per department (see ``make_fraud_scenario``); with this one it also recalls more frauds
#: at 1 % false positives in every department.
FRAUD_SEED = 11
#: Metric name -> column heading of the comparison tables.
SHOWN: Mapping[str, str] = MappingProxyType(
    {"roc_auc": "ROC-AUC", "recall_at_1pct_fpr": "recall @ 1% FPR"}
)


@dataclass(frozen=True)
class DemoScenario:
    """What a demo federation trains: its departments, their data and the job.

    ``write_data`` writes every department's data into a folder and returns, per node id,
    what that department's node offers (the job's dataset name, file and harmonization).
    """

    name: str
    story: str
    federation: str
    departments: Mapping[str, str]  # node id -> department name
    job_file: Path
    write_data: Callable[[Path], Mapping[str, LocalData]]
    questions: tuple[str, ...]


def _fraud_data(folder: Path) -> dict[str, LocalData]:
    csvs = make_fraud_scenario(FRAUD_SEED, DEFAULT_FRAUD_ROWS, folder)
    return {
        dept: LocalData("fraud", csv, csv.with_name(f"{dept}.harmonization.yaml"))
        for dept, csv in csvs.items()
    }


#: The demos ``clawfed demo --scenario`` can run.
SCENARIOS: Mapping[str, DemoScenario] = MappingProxyType(
    {
        "fraud": DemoScenario(
            name="fraud",
            story="a bank's 信贷部, 信用卡中心 and 消费金融部 train an anti-fraud model together",
            federation="demo-bank",
            departments=FRAUD_DEPARTMENTS,
            job_file=_EXAMPLES / "fraud-job.yaml",
            write_data=_fraud_data,
            questions=(
                "训练进度怎么样",
                "信贷部模型AUC多少",
                "对比下信贷部和信用卡中心的AUC",
                "/版本",
            ),
        ),
    }
)

#: Every ``--scenario``: the table above plus the retail sales-forecast demo
#: (``clawfed.cli.demo_retail``), which asks a regional question as a federated query.
_ALL_SCENARIOS = (*SCENARIOS, "retail")


@dataclass(frozen=True)
class DepartmentResult:
    """One department's holdout metrics of the three models compared."""

    node_id: str
    name: str
    local: Metrics
    federated: Metrics
    pooled: Metrics

    def to_json(self) -> dict[str, object]:
        """``name``, ``local_auc``, ``federated_auc``, ``pooled_auc`` and the recalls."""
        out: dict[str, object] = {"name": self.name, "node_id": self.node_id}
        for model, metrics in (
            ("local", self.local),
            ("federated", self.federated),
            ("pooled", self.pooled),
        ):
            out[f"{model}_auc"] = metrics.get("roc_auc")
            out[f"{model}_recall_1pct_fpr"] = metrics.get("recall_at_1pct_fpr")
        return out


@dataclass(frozen=True)
class DemoSummary:
    """What the demo ends with: the comparison, the final version and the audit check."""

    departments: tuple[DepartmentResult, ...]
    version: str
    sha256: str
    versions: int
    audit_ok: bool
    audit_detail: str
    wall_s: float

    def to_json(self) -> dict[str, object]:
        """The ``clawfed demo --json`` document."""
        return {
            "departments": [d.to_json() for d in self.departments],
            "version": self.version,
            "audit_ok": self.audit_ok,
            "wall_s": round(self.wall_s, 1),
        }


def _job_text(scenario: DemoScenario, rounds: int | None) -> str:
    if not scenario.job_file.is_file():
        raise ConfigError(f"the demo's job file {scenario.job_file} is missing from this checkout")
    data: dict[str, Any] = yaml.safe_load(scenario.job_file.read_text(encoding="utf-8"))
    if rounds is not None:
        data["rounds"] = rounds
    data["evaluate_every"] = 1
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


def _fmt(metrics: Mapping[str, float], name: str) -> str:
    value = metrics.get(name)
    return "—" if value is None else f"{value:.3f}"


class _Progress:
    """Prints node joins and one line per completed round (each department's holdout AUC)."""

    def __init__(self, out: Console) -> None:
        self._out = out

    def __call__(self, kind: str, data: Mapping[str, Any]) -> None:
        if kind == "round_completed":
            report = data["report"]
            assert isinstance(report, RoundReport)
            parts = "  ".join(
                f"{p.department} {_fmt(p.metrics, 'roc_auc')}" for p in report.participants
            )
            self._out.print(
                f"  round {report.round_no:>2}  AUC  {parts}  ({report.duration_s:.1f} s)",
                highlight=False,
            )
        elif kind == "node_joined":
            self._out.print(f"  node joined: {data.get('department')} ({data.get('node_id')})")
        elif kind in ("node_dropped", "update_rejected"):
            self._out.print(f"  [yellow]{kind}[/]: {data.get('node_id')} {data.get('reason', '')}")


def _references(
    spec: JobSpec, data: Mapping[str, LocalData]
) -> tuple[dict[str, Metrics], dict[str, Metrics]]:
    """Each department alone (what it had before), and all training rows pooled."""
    from clawfed.node.baseline import local_baseline, pooled_reference
    from clawfed.node.learning_runner import LearningRunner

    config, rounds = task_config(spec), spec.rounds
    local = {
        dept: local_baseline(LearningRunner({d.name: d}), config, rounds)
        for dept, d in data.items()
    }
    return local, pooled_reference(data, config, rounds)


def _ask(
    wecom: FakeWeComServer, chat: ChatService, questions: tuple[str, ...]
) -> list[tuple[str, str]]:
    """A staff member asks the bot in plain Chinese, through WeCom's encrypted callback."""
    base = chat.callback_url
    if base is None:
        raise JobError("the demo's chat callback endpoint did not start")
    answers = []
    for question in questions:
        delivery = wecom.fake.post_user_message(base, _ASKER, question)
        if not delivery.delivered:
            raise JobError(
                f"the chat endpoint answered HTTP {delivery.status_code} to {question!r}"
            )
        reply = ""
        if delivery.reply_xml:
            reply = parse_flat_xml(delivery.reply_xml).get("Content", "")
        answers.append((question, reply or "(the answer follows as an application message)"))
    chat.outbox.wait_idle(30)
    return answers


def _transcript(out: Console, fake: FakeWeCom, answers: list[tuple[str, str]]) -> None:
    out.rule("WeCom (企业微信) transcript: what the local WeCom received")
    for entry in fake.transcript():
        body = entry.body or {}
        if entry.path.endswith("/webhook/send") or entry.path.endswith("/message/send"):
            kind = str(body.get("msgtype", ""))
            part = body.get(kind)
            text = part.get("content", "") if isinstance(part, dict) else ""
            who = "群机器人" if entry.path.endswith("/webhook/send") else "应用消息"
            out.print(f"[bold]{who}[/] {escape(text or f'[{kind}]')}", highlight=False)
        elif entry.path.endswith("/media/upload"):
            out.print("[bold]应用消息[/] \\[chart image uploaded]", highlight=False)
    out.rule(f"questions from {_ASKER} in WeCom, answered through the encrypted callback")
    for question, reply in answers:
        out.print(f"[bold]{_ASKER}:[/] {escape(question)}", highlight=False)
        out.print(f"[bold]clawfed:[/] {escape(reply)}", highlight=False)


def _summary(
    ws: Workspace,
    scenario: DemoScenario,
    job: str,
    references: tuple[Mapping[str, Metrics], Mapping[str, Metrics]],
    started: float,
) -> DemoSummary:
    with ws.database() as db:
        versions = ModelRegistry(db).list(job)
        verify = AuditLog(db).verify()
    if not versions:
        raise JobError(f"job {job} completed without a model version in the registry")
    final = versions[-1]
    local, pooled = references
    departments = tuple(
        DepartmentResult(
            node_id, name, local[node_id], final.department_metrics.get(name, {}), pooled[node_id]
        )
        for node_id, name in scenario.departments.items()
    )
    detail = f"chain intact: {verify.checked} records"
    if not verify.ok:
        detail = f"chain broken at record seq {verify.first_bad_seq}: {verify.problem}"
    wall = time.monotonic() - started
    return DemoSummary(departments, final.version_id, final.sha256, len(versions), verify.ok,
                       detail, wall)  # fmt: skip


def _show(out: Console, summary: DemoSummary) -> None:
    """One table per department, then the version and the audit check."""
    out.rule("each department's holdout: alone, federated, and all rows pooled (reference)")
    for dept in summary.departments:
        table = Table("model", *SHOWN.values(), title=f"{dept.name} ({dept.node_id})")
        for label, metrics in (
            ("local only", dept.local),
            (f"federated ({summary.version})", dept.federated),
            ("pooled (reference only)", dept.pooled),
        ):
            table.add_row(label, *(_fmt(metrics, m) for m in SHOWN))
        out.print(table)
    out.print(
        f"version {summary.version}: sha256 {summary.sha256[:16]}…, {summary.versions} versions "
        "in the registry",
        highlight=False,
    )
    state = "[green]ok[/]" if summary.audit_ok else "[bold red]FAILED[/]"
    out.print(f"audit verify: {state} ({summary.audit_detail})", highlight=False)
    out.print(f"wall time {summary.wall_s:.1f} s", highlight=False)


async def _run(root: Path, scenario: DemoScenario, rounds: int | None, out: Console) -> DemoSummary:
    started = time.monotonic()
    fresh_folder(root)
    out.print(f"[bold]clawfed demo[/] in {root}: {scenario.story}; rows never leave their node")
    data = scenario.write_data(root / "data")
    ws = init_workspace(root / "ws", federation=scenario.federation, port=free_port())
    wecom = serve_fake_wecom("127.0.0.1", 0, fake=FakeWeCom(users=(_ASKER, "lisi", "wangwu")))
    chat = demo_chat_section(wecom)
    chat["http_port"] = free_port()
    chat["routes"] = [{"events": _ROUTED, "channel": "group"}]
    settings = ws.settings.model_copy(update={"chat": chat})
    save_settings(ws.root, settings)
    ws = Workspace(ws.root, settings)
    kits = {}
    for dept, name in scenario.departments.items():
        kits[dept] = root / f"{dept}.kit"
        enroll_node(ws, dept, name, kits[dept])
    out.print(f"federation CA, coordinator certificate and {len(kits)} enrollment kits in {root}")
    coordinator = Coordinator(ws, web=("127.0.0.1", 0))
    coordinator.listeners.append(_Progress(out))
    port = await coordinator.start()
    out.print(
        f"coordinator on 127.0.0.1:{port} (mutual TLS), local WeCom at {wecom.url}; "
        f"starting {len(kits)} node processes"
    )
    if coordinator.web is not None:
        token = _dashboard_token(coordinator)
        out.print(
            f"dashboard and REST API at {coordinator.web.url} while the demo runs "
            f"(log in as data admin with token {token})",
            highlight=False,
        )
    procs = start_nodes(root, kits, data)
    try:
        live = await coordinator.hub.wait_for_nodes(None, len(kits), 120)
        if len(live) < len(kits):
            raise JobError(f"only {len(live)} of {len(kits)} nodes connected; see {root}/logs")
        text = _job_text(scenario, rounds)
        spec = parse_job(text, source=str(scenario.job_file))
        info = coordinator.jobs.submit(spec, actor="demo-admin")
        out.print(
            f"job [bold]{info.job_id}[/]: {spec.rounds} rounds of {spec.strategy.name}, "
            f"model {spec.model.label}"
        )
        await coordinator.jobs.wait(info.job_id)
        final = coordinator.jobs.info(info.job_id)
        out.print(f"job {final.job_id}: {final.status} {final.message}", highlight=False)
        if final.status != "completed":
            raise JobError(f"the demo job ended {final.status}: {final.message}")
        out.print("training the local-only and pooled reference models…")
        references = asyncio.create_task(asyncio.to_thread(_references, spec, data))
        assert coordinator.chat is not None
        answers = await asyncio.to_thread(_ask, wecom, coordinator.chat, scenario.questions)
        done = await references
    finally:
        stop_processes(procs)
        await coordinator.stop()
        wecom.stop()
    _transcript(out, wecom.fake, answers)
    return _summary(ws, scenario, info.job_id, done, started)


def _dashboard_token(coordinator: Coordinator) -> str:
    """A data admin and a one-day API token for looking at the demo in the dashboard."""
    users = UserDirectory(coordinator.db, audit=coordinator.audit)
    users.create("demo-admin", Role.DATA_ADMIN, display_name="demo data admin")
    issued = users.issue_token("demo-admin", label="clawfed demo", expires_in=timedelta(days=1))
    return issued.token


def demo(
    folder: Annotated[
        Path, typer.Option("--dir", help="Folder for the demo (made by it; recreated).")
    ] = Path("demo-ws"),
    rounds: Annotated[
        int | None, typer.Option(min=1, max=200, help="Federated rounds (default: the job's).")
    ] = None,
    scenario: Annotated[
        str, typer.Option(help=f"Which demo: {', '.join(_ALL_SCENARIOS)}.")
    ] = "fraud",
    as_json: Annotated[
        bool, typer.Option("--json", help="Print only the summary, as JSON (progress: stderr).")
    ] = False,
) -> None:
    """Run a federation of departments end to end on this machine, then compare models."""
    if scenario not in _ALL_SCENARIOS:
        raise ConfigError(f"unknown --scenario {scenario!r}; known: {', '.join(_ALL_SCENARIOS)}")
    if scenario == "retail":  # its own flow: a sales-forecast job, then a federated question
        from clawfed.cli.demo_retail import run_retail_demo

        code = run_retail_demo(folder.resolve(), as_json=as_json)
        if code:
            raise SystemExit(code)
        return
    setup_logging()
    import logging

    logging.getLogger("clawfed").setLevel(logging.WARNING)
    for noisy in ("alembic", "httpx", "uvicorn", "uvicorn.error", "jieba"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    out = err_console if as_json else console
    summary = asyncio.run(_run(folder.resolve(), SCENARIOS[scenario], rounds, out))
    if as_json:
        typer.echo(json.dumps(summary.to_json(), ensure_ascii=False))
    else:
        _show(out, summary)
    if not summary.audit_ok:
        raise SystemExit(1)


def register(app: typer.Typer) -> None:
    """Add the demo command to the top-level app."""
    app.command()(demo)
