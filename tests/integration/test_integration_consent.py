"""Consent in a real federation: withdrawal between rounds, and a redacted text job.

A real node process reports fewer consenting rows in the round after subjects withdraw;
three branches train the sales-bot intent classifier on their redacted, consented messages.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from conftest import WorkspaceFactory
from integration_support import (
    WAIT_S,
    Procs,
    clawfed,
    enroll,
    run,
    running_agents,
    running_coordinator,
    until,
)

from clawfed.coordinator.jobspec import parse_job
from clawfed.data.salesbot import BRANCH_MIX, INTENTS, write_salesbot_scenario
from clawfed.node.dispatch import DispatchRunner, LocalData

ROWS = 200
WITHDRAWN_LATER = 37
JOB = f"""
name: consent-rounds
model: {{name: logistic_regression}}
dataset: loans
data: {{target: default, features: [income, age], standardize: false}}
rounds: 3
min_nodes: 1
round_deadline_s: {WAIT_S / 2}
train: {{epochs: 1, batch_size: 32, lr: 0.1}}
"""


def write_table(path: Path, withdrawn: int) -> None:
    rng = np.random.default_rng(11)
    income = rng.normal(10, 3, ROWS).round(2)
    age = rng.integers(20, 65, ROWS)
    default = (income + rng.normal(0, 2, ROWS) < 9).astype(int)
    consent = ["yes"] * ROWS
    for i in range(withdrawn):
        consent[i * 5] = "no"
    frame = pd.DataFrame({"income": income, "age": age, "default": default, "agreed": consent})
    tmp = path.with_suffix(".tmp")
    frame.to_csv(tmp, index=False)
    os.replace(tmp, path)


def test_withdrawal_changes_the_next_rounds_counts(
    workspace_factory: WorkspaceFactory, procs: Procs, tmp_path: Path
) -> None:
    ws = workspace_factory()
    data = tmp_path / "data"
    data.mkdir()
    csv = data / "loans.csv"
    write_table(csv, withdrawn=2)
    spec = data / "loans.yaml"
    spec.write_text(
        "name: loans\nsource: {kind: csv, path: loans.csv}\ntarget: default\n"
        "features: [income, age]\nconsent_column: agreed\n",
        encoding="utf-8",
    )
    kit = enroll(ws, "credit-node", "credit")
    reports: list[Any] = []

    def on_event(kind: str, body: Any) -> None:
        if kind != "round_completed":
            return
        reports.append(body["report"])
        if body["round"] == 1:  # between rounds 1 and 2: subjects withdraw their consent
            write_table(csv, withdrawn=WITHDRAWN_LATER)

    async def scenario() -> str:
        async with running_coordinator(ws) as coordinator:
            coordinator.listeners.append(on_event)
            node = procs.start(
                "node", clawfed("node", "--kit", str(kit), "--data", f"loans={spec}")
            )
            await until(lambda: coordinator.hub.get("credit-node") is not None, "the node")
            info = coordinator.jobs.submit(parse_job(JOB), actor="admin")
            await asyncio.wait_for(coordinator.jobs.wait(info.job_id), 2 * WAIT_S)
            node.popen.terminate()
            uses.extend(coordinator.audit.list(action="round.data_use"))
            return str(coordinator.jobs.info(info.job_id).status)

    uses: list[Any] = []
    status = run(scenario())
    assert "COMPLETED" in status.upper(), status
    # the node's fit answers, stored per participant in each round's report (train_ prefix)
    fits = [
        (p.metrics["train_rows_excluded_no_consent"], p.metrics["train_rows_used"], p.num_samples)
        for r in reports
        for p in r.participants
    ]
    assert [f[0] for f in fits] == [2.0, float(WITHDRAWN_LATER), float(WITHDRAWN_LATER)]
    assert all(used == samples for _, used, samples in fits)
    assert fits[1][2] < fits[0][2]
    holdout = [p.metrics["holdout_rows_used"] for r in reports for p in r.participants]
    assert fits[0][1] + holdout[0] == ROWS - 2
    assert fits[1][1] + holdout[1] == ROWS - WITHDRAWN_LATER
    # each round's data use is in the audit chain, with the counts and never a row
    assert [u.detail["round"] for u in uses] == [1, 2, 3]
    assert all(u.departments == ("credit",) for u in uses), uses
    excluded = [u.detail["participants"][0]["rows_excluded_no_consent"] for u in uses]
    assert excluded == [2, WITHDRAWN_LATER, WITHDRAWN_LATER]
    # the node's own log records each read: counts only, never a row
    log = procs.started[0].output()
    assert "198 row(s) used, 2 left out for lack of consent" in log
    assert f"{ROWS - WITHDRAWN_LATER} row(s) used, {WITHDRAWN_LATER} left out" in log


def text_job() -> str:
    settings = {"classes": list(INTENTS), "buckets": 4096, "dim": 16}
    return (
        "name: intents\nrounds: 2\nmin_nodes: 3\n"
        f"round_deadline_s: {WAIT_S / 2}\n"
        f"model: {{name: text_classifier, settings: {json.dumps(settings, ensure_ascii=False)}}}\n"
        "dataset: intents\n"
        "data: {target: intent, features: [message], standardize: false}\n"
        "train: {epochs: 1, batch_size: 16, lr: 0.05, optimizer: adam}\n"
    )


def test_branches_train_the_intent_model_on_redacted_consented_text(
    workspace_factory: WorkspaceFactory, tmp_path: Path
) -> None:
    ws = workspace_factory()
    files = write_salesbot_scenario(tmp_path / "data", rows_per_branch=60, seed=3)
    for branch in BRANCH_MIX:  # every branch: the first 5 subjects did not consent
        csv = files[branch].with_name(f"{branch}.csv")
        frame = pd.read_csv(csv)
        frame["consent"] = ["no"] * 5 + ["yes"] * (len(frame) - 5)
        frame.to_csv(csv, index=False)
        files[branch].write_text(
            files[branch].read_text(encoding="utf-8") + "consent_column: consent\n",
            encoding="utf-8",
        )
    kits = [enroll(ws, branch, branch) for branch in BRANCH_MIX]
    specs = iter([files[b] for b in BRANCH_MIX])
    reports: list[Any] = []

    def runner() -> DispatchRunner:
        return DispatchRunner({"intents": LocalData("intents", next(specs))})

    async def scenario() -> str:
        async with running_coordinator(ws) as coordinator:
            coordinator.listeners.append(
                lambda kind, body: (
                    reports.append(body["report"]) if kind == "round_completed" else None
                )
            )
            async with running_agents(kits, runner) as group:
                await group.connected()
                info = coordinator.jobs.submit(parse_job(text_job()), actor="admin")
                await asyncio.wait_for(coordinator.jobs.wait(info.job_id), 2 * WAIT_S)
                return str(coordinator.jobs.info(info.job_id).status)

    status = run(scenario())
    assert "COMPLETED" in status.upper(), status
    assert len(reports) == 2
    for report in reports:
        assert {p.node_id for p in report.participants} == set(BRANCH_MIX)
        for p in report.participants:
            assert p.metrics["train_rows_excluded_no_consent"] == 5.0
            assert p.metrics["train_rows_used"] == p.num_samples
            assert p.metrics["holdout_rows_used"] + p.num_samples == 55
            assert 0.0 <= p.metrics["macro_f1"] <= 1.0
