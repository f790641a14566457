"""``clawfed demo``: one real run (CA, coordinator, three node processes) and its JSON summary.

The demo runs once per module as ``python -m clawfed demo --json``; every test reads what it
printed and what it left in its folder.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from rich.console import Console

from clawfed.aggregation import ConfigValue
from clawfed.cli.demo import SCENARIOS, DemoSummary, DepartmentResult, _show
from clawfed.coordinator.jobspec import parse_job
from clawfed.coordinator.task_config import task_config
from clawfed.coordinator.workspace import open_workspace
from clawfed.data.scenarios import FRAUD_DEPARTMENTS
from clawfed.governance.audit import AuditLog
from clawfed.governance.policy import Role
from clawfed.governance.registry import ModelRegistry
from clawfed.governance.users import UserDirectory
from clawfed.node.baseline import local_baseline
from clawfed.node.learning_runner import LearningRunner, LocalData

pytestmark = pytest.mark.slow  # real processes

KEYS = {"departments", "version", "audit_ok", "wall_s"}
NAMES = ["信贷部", "信用卡中心", "消费金融部"]


@dataclass(frozen=True)
class Ran:
    """A finished ``clawfed`` process."""

    returncode: int
    stdout: str
    stderr: str


def _clawfed(*args: str, timeout: float = 280) -> Ran:
    env = dict(os.environ, PYTHONUNBUFFERED="1", COLUMNS="200", NO_COLOR="1", TERM="dumb")
    done = subprocess.run(
        [sys.executable, "-m", "clawfed", *args],
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
        check=False,
    )
    return Ran(done.returncode, done.stdout, done.stderr)


@dataclass(frozen=True)
class DemoRun:
    """The folder the demo ran in, what it printed, and its stdout read as JSON."""

    root: Path
    ran: Ran
    summary: dict[str, object]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    root = tmp_path_factory.mktemp("demo") / "run"
    # A folder an earlier demo made: the demo recreates it.
    root.mkdir()
    (root / ".clawfed-demo").write_text("made by clawfed demo\n", encoding="utf-8")
    (root / "stale.txt").write_text("from an earlier run\n", encoding="utf-8")
    ran = _clawfed("demo", "--dir", str(root), "--json")
    assert ran.returncode == 0, ran.stderr[-3000:]
    summary = json.loads(ran.stdout)  # stdout holds the JSON document and nothing else
    assert isinstance(summary, dict)
    return DemoRun(root, ran, summary)


def _departments(run: DemoRun) -> list[dict[str, object]]:
    departments = run.summary["departments"]
    assert isinstance(departments, list)
    return departments


def test_the_json_summary_has_exactly_the_promised_keys(demo_run: DemoRun) -> None:
    summary = demo_run.summary
    assert set(summary) == KEYS
    assert isinstance(summary["version"], str)
    assert summary["audit_ok"] is True
    wall = summary["wall_s"]
    assert isinstance(wall, float) and wall > 0
    departments = _departments(demo_run)
    assert [d["name"] for d in departments] == NAMES
    for entry in departments:
        assert {"name", "local_auc", "federated_auc", "pooled_auc"} <= set(entry)
        for key in ("local_auc", "federated_auc", "pooled_auc"):
            value = entry[key]
            assert isinstance(value, float) and 0.5 < value <= 1.0, (entry["name"], key, value)
        for key in ("local_recall_1pct_fpr", "federated_recall_1pct_fpr"):
            value = entry[key]
            assert isinstance(value, float) and 0.0 <= value <= 1.0, (entry["name"], key, value)


def test_the_federated_model_beats_every_department_alone(demo_run: DemoRun) -> None:
    for entry in _departments(demo_run):
        federated, local = entry["federated_auc"], entry["local_auc"]
        assert isinstance(federated, float) and isinstance(local, float)
        assert federated > local + 0.02, entry


def test_the_version_is_the_tenth_of_the_job(demo_run: DemoRun) -> None:
    assert re.fullmatch(r"fraud-lr@v10", str(demo_run.summary["version"]))


def test_the_numbers_come_from_the_registry_and_the_same_holdout(demo_run: DemoRun) -> None:
    """Federated: what the nodes reported for the final version; local: recomputed here."""
    ws = open_workspace(demo_run.root / "ws")
    with ws.database() as db:
        final = ModelRegistry(db).get(str(demo_run.summary["version"]))
        verify = AuditLog(db).verify()
    assert verify.ok and verify.checked > 0
    assert {p.department for p in final.participants} == set(NAMES)
    data = demo_run.root / "data"
    config = _job_config()
    for entry in _departments(demo_run):
        metrics = final.department_metrics[str(entry["name"])]
        assert entry["federated_auc"] == metrics["roc_auc"]
        assert entry["federated_recall_1pct_fpr"] == metrics["recall_at_1pct_fpr"]
        dept = str(entry["node_id"])
        assert FRAUD_DEPARTMENTS[dept] == entry["name"]
        local = LocalData("fraud", data / f"{dept}.csv", data / f"{dept}.harmonization.yaml")
        alone = local_baseline(LearningRunner({"fraud": local}), config, 10)
        assert entry["local_auc"] == pytest.approx(alone["roc_auc"], abs=1e-12)


def _job_config() -> dict[str, ConfigValue]:
    spec = parse_job(SCENARIOS["fraud"].job_file.read_text(encoding="utf-8"))
    assert spec.rounds == 10
    return dict(task_config(spec))


def test_progress_goes_to_stderr_and_the_folder_was_recreated(demo_run: DemoRun) -> None:
    err = demo_run.ran.stderr
    for round_no in range(1, 11):
        assert re.search(rf"round {round_no:>2}  AUC  ", err), round_no
    assert "node joined" in err
    assert not (demo_run.root / "stale.txt").exists()
    assert (demo_run.root / ".clawfed-demo").is_file()
    logs = sorted(p.name for p in (demo_run.root / "logs").iterdir())
    assert logs == sorted(f"{d}.log" for d in FRAUD_DEPARTMENTS)


def test_refuses_a_folder_it_did_not_make(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("precious\n", encoding="utf-8")
    ran = _clawfed("demo", "--dir", str(mine), "--json", timeout=120)
    assert ran.returncode == 2
    assert ran.stdout == ""
    err = " ".join(ran.stderr.split())
    assert "was not made by `clawfed demo`" in err and "pick another --dir" in err
    assert (mine / "keep.txt").read_text(encoding="utf-8") == "precious\n"
    assert sorted(p.name for p in mine.iterdir()) == ["keep.txt"]
    ran = _clawfed("demo", "--dir", str(tmp_path / "new"), "--scenario", "shop", timeout=120)
    assert ran.returncode == 2
    assert "unknown --scenario 'shop'; known: fraud" in " ".join(ran.stderr.split())
    assert not (tmp_path / "new").exists()


def test_the_tables_show_every_department_and_model() -> None:
    summary = DemoSummary(
        departments=(
            DepartmentResult(
                "credit",
                "信贷部",
                {"roc_auc": 0.7, "recall_at_1pct_fpr": 0.1},
                {"roc_auc": 0.8, "recall_at_1pct_fpr": 0.2},
                {"roc_auc": 0.81},
            ),
        ),
        version="fraud-lr@v10",
        sha256="ab" * 32,
        versions=10,
        audit_ok=False,
        audit_detail="chain broken at record seq 3",
        wall_s=12.34,
    )
    console = Console(record=True, width=120, color_system=None)
    _show(console, summary)
    text = console.export_text()
    assert "信贷部 (credit)" in text
    for row, auc, recall in (
        ("local only", "0.700", "0.100"),
        ("federated (fraud-lr@v10)", "0.800", "0.200"),
        ("pooled (reference only)", "0.810", "—"),
    ):
        line = next(x for x in text.splitlines() if row in x)
        assert auc in line and recall in line, line
    assert "audit verify: FAILED (chain broken at record seq 3)" in text
    assert summary.to_json() == {
        "departments": [
            {
                "name": "信贷部",
                "node_id": "credit",
                "local_auc": 0.7,
                "local_recall_1pct_fpr": 0.1,
                "federated_auc": 0.8,
                "federated_recall_1pct_fpr": 0.2,
                "pooled_auc": 0.81,
                "pooled_recall_1pct_fpr": None,
            }
        ],
        "version": "fraud-lr@v10",
        "audit_ok": False,
        "wall_s": 12.3,
    }


def test_the_demo_serves_the_dashboard_and_says_where(demo_run: DemoRun) -> None:
    found = re.search(
        r"dashboard and REST API at (http://127\.0\.0\.1:\d+/)\S* while the demo runs "
        r"\(log in as data admin with token (\S+)\)",
        demo_run.ran.stderr,
    )
    assert found is not None, demo_run.ran.stderr[-3000:]
    assert len(found.group(2)) >= 20  # a real secret, shown once
    with open_workspace(demo_run.root / "ws").database() as db:
        admin = UserDirectory(db).authenticate(found.group(2))
    assert admin.user_id == "demo-admin" and admin.role is Role.DATA_ADMIN
