"""No raw row leaves a node: canary values planted in one department's table are found nowhere.

One department's CSV gets a unique customer name, transaction id and amount in a few rows.
A real federation (coordinator, three in-process node agents over mutual TLS, the example
fraud job for two rounds) then trains on it, and the test records every byte the canary
node hands to gRPC (``NodeAgent(on_send=...)``, before TLS), every log record and every
byte written to stdout / stderr by this process, the coordinator's notifications, every
row of every SQL table and every file of the coordinator's workspace. None may hold a
canary. A deliberately leaking runner, sent through the same recording, proves that the
detector finds a leak when there is one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
import yaml
from conftest import WorkspaceFactory
from integration_support import (
    WAIT_S,
    EventRecorder,
    credentials,
    enroll,
    run,
    running_coordinator,
    store,
    until,
)

from clawfed.aggregation import ConfigValue
from clawfed.coordinator.jobspec import parse_job
from clawfed.coordinator.workspace import Workspace
from clawfed.core import Weights
from clawfed.data.scenarios import FRAUD_DEPARTMENTS, fraud_spec, make_fraud_scenario
from clawfed.node.agent import NodeAgent
from clawfed.node.dispatch import DispatchRunner, LocalData
from clawfed.node.runner import EvalAnswer, FitAnswer
from clawfed.wire._proto import federation_pb2 as pb
from clawfed.wire.chunkwire import ChunkView, parse_node_message

JOB_FILE = Path(__file__).resolve().parents[2] / "examples" / "fraud-job.yaml"
ROUNDS = 2
#: Small tables keep the run short; credit (about 1 % fraud) still has a few frauds.
ROWS = {"card": 800, "credit": 1500, "consumer": 300}
CANARY_DEPT = "card"
CANARY_ROWS = (3, 97, 250, 511, 777)

CANARY_CUSTOMER = "CANARY-CUST-93f1"
CANARY_TXN = "CANARY-TXN-93f1"
CANARY_AMOUNT = 98765.4321
#: What a leak of each canary would look like, as bytes: the texts and the machine floats.
NEEDLES: Mapping[str, tuple[bytes, ...]] = {
    "customer id": (CANARY_CUSTOMER.encode(),),
    "transaction id": (CANARY_TXN.encode(),),
    "amount as text": (b"98765.4321", b"98765.43"),
    "amount as float64": (struct.pack("<d", CANARY_AMOUNT),),
    "amount as float32": (struct.pack("<f", CANARY_AMOUNT),),
}


def find_canaries(blobs: Iterable[bytes]) -> set[str]:
    """Names of the canaries (keys of ``NEEDLES``) found in any of ``blobs``."""
    found: set[str] = set()
    for blob in blobs:
        for name, needles in NEEDLES.items():
            if name not in found and any(n in blob for n in needles):
                found.add(name)
    return found


@dataclass
class Evidence:
    """Everything one federation run left behind that is not the node's own data."""

    status: str = ""
    rounds_done: int = 0
    transport: list[bytes] = field(default_factory=list)  # canary node's messages, pre-TLS
    hello: list[str] = field(default_factory=list)  # dataset metadata the node announced
    logs: list[str] = field(default_factory=list)  # log records and stdout / stderr
    log_sources: set[str] = field(default_factory=set)
    events: list[str] = field(default_factory=list)  # coordinator notifications
    tables: dict[str, list[bytes]] = field(default_factory=dict)  # every SQL row, per table
    files: dict[str, bytes] = field(default_factory=dict)  # every workspace file

    def leaks(self) -> dict[str, set[str]]:
        """Channel -> canaries found there (only channels with a finding)."""
        channels = {
            "transport": self.transport,
            "hello": [m.encode() for m in self.hello],
            "logs": [line.encode() for line in self.logs],
            "events": [e.encode() for e in self.events],
            "sql": [row for rows in self.tables.values() for row in rows],
            "files": list(self.files.values()),
        }
        found = {name: find_canaries(blobs) for name, blobs in channels.items()}
        return {name: hits for name, hits in found.items() if hits}


# ---- the data and a leaking runner -------------------------------------------------------


def plant_canaries(csv: Path) -> None:
    """Overwrite a few rows' customer name, transaction id and amount with the canaries."""
    frame = pd.read_csv(csv, dtype=str, keep_default_na=False)
    rows = list(CANARY_ROWS)
    frame.loc[rows, "customer_name"] = CANARY_CUSTOMER
    frame.loc[rows, "txn_id"] = CANARY_TXN
    frame.loc[rows, "amount"] = repr(CANARY_AMOUNT)
    frame.to_csv(csv, index=False, encoding="utf-8")


class LeakyRunner:
    """A buggy runner (the negative control): it reports its largest raw transaction.

    The customer and amount of the largest row of the node's own table go out in a metric
    name and value and in the dataset metadata, and into a log line written from the
    training thread: what a careless runner could do.
    """

    def __init__(self, inner: DispatchRunner, csv: Path) -> None:
        self._inner = inner
        frame = pd.read_csv(csv)
        top = frame.loc[frame["amount"].idxmax()]
        self._metric = f"largest_txn_of_{top['customer_name']}"
        self._amount = float(top["amount"])

    def describe(self) -> list[tuple[str, str]]:
        """The real metadata with the largest transaction added."""
        out = []
        for name, meta in self._inner.describe():
            data = json.loads(meta)
            data["largest_txn"] = {"customer": self._metric, "amount": self._amount}
            out.append((name, json.dumps(data)))
        return out

    def init(self, config: Mapping[str, ConfigValue]) -> Weights:
        return self._inner.init(config)

    def stats(self, config: Mapping[str, ConfigValue]) -> Weights:
        return self._inner.stats(config)

    def fit(self, config: Mapping[str, ConfigValue], weights: Weights) -> FitAnswer:
        answer = self._inner.fit(config, weights)
        logging.getLogger("clawfed.node.leaky").info(
            "largest transaction: %s, %.4f", self._metric, self._amount
        )
        metrics = {**answer.metrics, self._metric: self._amount}
        return FitAnswer(answer.num_samples, metrics, answer.delta)

    def evaluate(self, config: Mapping[str, ConfigValue], weights: Weights) -> EvalAnswer:
        answer = self._inner.evaluate(config, weights)
        return EvalAnswer(answer.num_samples, {**answer.metrics, self._metric: self._amount})


# ---- one federation run, recorded -------------------------------------------------------


def job_text() -> str:
    """The example fraud job, shortened to ``ROUNDS`` rounds with evaluation every round.

    Its columns and categories are taken from the scenario's own spec, so the job fits the
    generated tables even while the scenario's vocabulary changes.
    """
    data = yaml.safe_load(JOB_FILE.read_text(encoding="utf-8"))
    data.update(rounds=ROUNDS, evaluate_every=1, round_deadline_s=WAIT_S / 2, min_nodes=3)
    spec = fraud_spec(CANARY_DEPT, "unused.csv").model_dump(mode="json")
    data["data"].update({k: spec[k] for k in ("target", "features", "types", "categories")})
    return str(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))


async def federate(
    ws: Workspace, data: Mapping[str, Path], evidence: Evidence, *, leaky: bool
) -> None:
    """Run the fraud job over the three departments, recording into ``evidence``."""
    kits = {dept: enroll(ws, dept, FRAUD_DEPARTMENTS[dept]) for dept in data}
    async with running_coordinator(ws) as coordinator:
        recorder = EventRecorder(coordinator)
        stop = asyncio.Event()
        agents: list[NodeAgent] = []
        tasks: list[asyncio.Task[None]] = []
        for dept, csv in data.items():
            mapping = csv.with_name(f"{dept}.harmonization.yaml")
            if dept == CANARY_DEPT:  # its dataset spec, so the Hello carries its profile
                spec = csv.with_name(f"{dept}.dataset.yaml")
                real = DispatchRunner({"fraud": LocalData("fraud", spec, mapping)})
                runner: DispatchRunner | LeakyRunner = LeakyRunner(real, csv) if leaky else real
                described = runner.describe()
                evidence.hello.extend(meta for _, meta in described)
                tap = evidence.transport.append
            else:
                runner = DispatchRunner({"fraud": LocalData("fraud", csv, mapping)})
                described, tap = runner.describe(), None
            agent = NodeAgent(credentials(kits[dept]), runner, datasets=described, on_send=tap)
            agents.append(agent)
            tasks.append(asyncio.create_task(agent.run(stop), name=f"agent:{dept}"))
        try:
            await until(lambda: all(a.connected.is_set() for a in agents), "three nodes")
            info = coordinator.jobs.submit(parse_job(job_text()), actor="admin")
            await asyncio.wait_for(coordinator.jobs.wait(info.job_id), 2 * WAIT_S)
            final = coordinator.jobs.info(info.job_id)
            evidence.status, evidence.rounds_done = final.status, final.rounds_done
        finally:
            stop.set()
            await asyncio.wait(tasks, timeout=WAIT_S)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        evidence.events.extend(f"{kind} {data!r}" for kind, data in recorder.seen)


def dump_store(ws: Workspace) -> dict[str, list[bytes]]:
    """Every row of every table of the workspace's SQL store, each cell as bytes."""

    def cell(value: object) -> bytes:
        if isinstance(value, bytes | bytearray | memoryview):
            return bytes(value)
        return b"" if value is None else str(value).encode("utf-8")

    out: dict[str, list[bytes]] = {}
    with store(ws) as db, db.engine.connect() as conn:
        for name in sa.inspect(conn).get_table_names():
            rows = conn.execute(sa.select(sa.text("*")).select_from(sa.table(name))).all()
            out[name] = [b"\x1f".join(cell(v) for v in row) for row in rows]
    return out


def record_run(
    ws: Workspace,
    data: Mapping[str, Path],
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    *,
    leaky: bool,
) -> Evidence:
    """Federate with every log record of the process captured at DEBUG, then collect."""
    caplog.set_level(logging.DEBUG)  # the root logger: clawfed, grpc, SQLAlchemy, ...
    for name in [n for n in logging.root.manager.loggerDict if n.split(".")[0] == "clawfed"]:
        caplog.set_level(logging.DEBUG, logger=name)  # in case an earlier test raised one
    evidence = Evidence()
    run(federate(ws, data, evidence, leaky=leaky))
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    for record in caplog.records:
        evidence.logs.append(formatter.format(record))
        evidence.logs.append(repr(vars(record)))  # extras and raw arguments too
        evidence.log_sources.add(record.name)
    out, err = capfd.readouterr()
    evidence.logs.extend([out, err])
    evidence.tables = dump_store(ws)
    evidence.files = {
        str(p.relative_to(ws.root)): p.read_bytes() for p in ws.root.rglob("*") if p.is_file()
    }
    return evidence


@pytest.fixture
def scenario(tmp_path: Path) -> dict[str, Path]:
    """The three departments' tables, with the canaries planted in the canary department's."""
    data = make_fraud_scenario(11, ROWS, tmp_path / "data")
    plant_canaries(data[CANARY_DEPT])
    raw = data[CANARY_DEPT].read_bytes()
    assert find_canaries([raw]) == {"customer id", "transaction id", "amount as text"}
    assert raw.count(CANARY_CUSTOMER.encode()) == len(CANARY_ROWS)
    return data


def node_messages(raw: Iterable[bytes]) -> list[pb.NodeMessage | ChunkView]:
    """The recorded bytes decoded again (they must be valid session messages)."""
    return [parse_node_message(b) for b in raw]


# ---- the tests ---------------------------------------------------------------------------


def test_canary_values_leave_no_trace_on_the_wire_in_logs_or_in_the_store(
    workspace_factory: WorkspaceFactory,
    scenario: dict[str, Path],
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    ws = workspace_factory()
    evidence = record_run(ws, scenario, caplog, capfd, leaky=False)
    assert (evidence.status, evidence.rounds_done) == ("completed", ROUNDS)

    # Every channel was live, so finding nothing means something.
    messages = node_messages(evidence.transport)
    kinds = [m.WhichOneof("body") if isinstance(m, pb.NodeMessage) else "chunk" for m in messages]
    assert kinds[0] == "hello" and "chunk" in kinds
    successes = [m for m in messages if isinstance(m, pb.NodeMessage) and m.HasField("result")]
    assert sum(m.result.HasField("success") for m in successes) >= 2 * ROUNDS  # fit, evaluate
    hello = messages[0]
    assert isinstance(hello, pb.NodeMessage)
    profile = json.loads(hello.hello.datasets[0].metadata_json)["profile"]
    assert profile["rows"] == ROWS[CANARY_DEPT]  # the canary rows were read and profiled
    assert evidence.hello == [d.metadata_json for d in hello.hello.datasets]
    assert {"clawfed.node", "clawfed.coordinator"} <= {
        ".".join(n.split(".")[:2]) for n in evidence.log_sources
    }
    assert any("round_completed" in e for e in evidence.events)
    assert {"rounds", "model_versions", "audit_log"} <= set(evidence.tables), evidence.tables
    assert all(evidence.tables[t] for t in ("rounds", "model_versions", "audit_log"))
    assert any(name.endswith(".safetensors") for name in evidence.files), sorted(evidence.files)

    assert evidence.leaks() == {}


def test_the_detector_finds_a_runner_that_leaks_through_the_same_recording(
    workspace_factory: WorkspaceFactory,
    scenario: dict[str, Path],
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    ws = workspace_factory()
    evidence = record_run(ws, scenario, caplog, capfd, leaky=True)
    assert (evidence.status, evidence.rounds_done) == ("completed", ROUNDS)
    leaks = evidence.leaks()
    # the metric name and the metadata carry the customer; the metric value is a double
    assert {"customer id", "amount as text", "amount as float64"} <= leaks["transport"]
    assert {"customer id", "amount as text"} <= leaks["hello"]
    # the coordinator stored the metric: rows of the SQL store and the database file
    assert {"customer id", "amount as text"} <= leaks["sql"]
    assert "customer id" in leaks["files"]
    # the log line, written from the node's training thread
    assert {"customer id", "amount as text"} <= leaks["logs"]
    # each canary is told apart: the runner never sent the transaction id
    assert "transaction id" not in set().union(*leaks.values())


@pytest.mark.parametrize(
    ("blob", "found"),
    [
        (json.dumps({"m": CANARY_AMOUNT}).encode(), {"amount as text"}),
        (f"{CANARY_AMOUNT:.2f} CNY".encode(), {"amount as text"}),
        (b"\x00" + struct.pack("<d", CANARY_AMOUNT) + b"\xff", {"amount as float64"}),
        (b"ab" + struct.pack("<f", CANARY_AMOUNT), {"amount as float32"}),
        (f"name={CANARY_CUSTOMER}".encode(), {"customer id"}),
        (
            pb.NodeMessage(result=pb.TaskResult(task_id=CANARY_TXN)).SerializeToString(),
            {"transaction id"},
        ),
        (b"98765.4 98765 CANARY-CUST 9876.54321", set()),
    ],
)
def test_the_detector_sees_each_rendering_of_the_canaries(blob: bytes, found: set[str]) -> None:
    assert find_canaries([blob]) == found
