"""Approvals and node policies across real processes: CLI consent, revocation, refusals.

A coordinator and two department nodes run as ``clawfed`` processes; the credit node runs
with a local policy file (``clawfed node --policy``). A job that requires approval waits
until credit's head approves it with ``clawfed approve``, trains on credit's node only, and
stops using it once the approval is revoked. A job whose purpose credit's policy does not
allow is refused by that node, whatever the coordinator says: the refusal shows in the node's
log, in the round's report (failure code ``refused``) and in the audit chain.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from integration_support import (
    Procs,
    audit,
    clawfed,
    enroll,
    make_workspace,
    run_cli,
    store,
    wait_until,
)

from clawfed.governance.approvals import ApprovalBook, ApprovalStatus
from clawfed.governance.audit import AuditLog
from clawfed.governance.jobs import JobStore

pytestmark = pytest.mark.slow  # CLI and node processes

POLICY = """
version: 1
department: credit
datasets:
  loans:
    purposes: [credit scoring]
privacy:
  secure_aggregation: false
"""


def _csv(path: Path, seed: int) -> Path:
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(80, 2))
    y = (x[:, 0] > 0).astype(int)
    rows = "\n".join(f"{a:.4f},{b:.4f},{c}" for (a, b), c in zip(x, y, strict=True))
    path.write_text(f"x1,x2,y\n{rows}\n", encoding="utf-8")
    return path


def _job(path: Path, name: str, purpose: str, rounds: int, approval: bool) -> Path:
    path.write_text(
        f"name: {name}\nmodel: {{name: logistic_regression}}\ndataset: loans\n"
        f"purpose: {purpose}\nrequires_approval: {str(approval).lower()}\n"
        f"data: {{target: y, features: [x1, x2]}}\nrounds: {rounds}\nmin_nodes: 1\n"
        "round_deadline_s: 30\nmax_retries: 0\ntrain: {epochs: 1}\n",
        encoding="utf-8",
    )
    return path


def _ok(*args: str) -> str:
    done = run_cli(*args)
    assert done.returncode == 0, f"clawfed {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_approval_revocation_and_node_refusal_across_processes(
    tmp_path: Path, procs: Procs
) -> None:
    ws = make_workspace(tmp_path / "ws")
    w = ("--workspace", str(ws.root))
    kits = {"c1": enroll(ws, "c1", "credit"), "r1": enroll(ws, "r1", "risk")}
    policy = tmp_path / "credit-policy.yaml"
    policy.write_text(POLICY, encoding="utf-8")
    _ok("users", "add", "hugo", "--role", "department_head", "--department", "credit", *w)
    token = _ok("tokens", "issue", "hugo", "--label", "it", *w).strip().splitlines()[-1]
    assert token.startswith("cfd_")
    procs.coordinator(ws)
    procs.start("c1", clawfed("node", "--kit", str(kits["c1"]), "--policy", str(policy),
                              "--data", f"loans={_csv(tmp_path / 'c.csv', 1)}"))  # fmt: skip
    procs.start("r1", clawfed("node", "--kit", str(kits["r1"]),
                              "--data", f"loans={_csv(tmp_path / 'r.csv', 2)}"))  # fmt: skip
    _ok("job", "submit", str(_job(tmp_path / "s.yaml", "scoring", "credit scoring", 500, True)),
        *w)  # fmt: skip

    with store(ws) as db:
        book = ApprovalBook(db, AuditLog(db))
        jobs = JobStore(db)

        def statuses() -> dict[str, ApprovalStatus]:
            return {a.department: a.status for a in book.for_job("scoring")}

        wait_until(
            lambda: (
                statuses() == {"credit": ApprovalStatus.PENDING, "risk": ApprovalStatus.PENDING}
            ),
            "approval requests",
        )
        wait_until(lambda: jobs.get("scoring").message.startswith("waiting for approval"),
                   "the job to wait for approval")  # fmt: skip
        assert jobs.get("scoring").rounds_done == 0
        wrong = run_cli("approve", "scoring", "--department", "credit", "--purpose", "ads",
                        "--token", token, *w)  # fmt: skip
        assert wrong.returncode == 2 and "approve the purpose requested" in " ".join(
            wrong.stderr.split()
        )
        out = _ok("approve", "scoring", "--department", "credit", "--purpose", "credit scoring",
                  "--token", token, *w)  # fmt: skip
        assert "credit approved job scoring" in " ".join(out.split())
        wait_until(lambda: jobs.get("scoring").rounds_done >= 2, "two rounds on credit's data")
        trained = [r for r in jobs.rounds("scoring") if r.version_id]
        assert trained and all([p.node_id for p in r.participants] == ["c1"] for r in trained)

        _ok("approvals", "revoke", "scoring", "--department", "credit", "--reason",
            "audit season", "--token", token, *w)  # fmt: skip
        revoked_at = jobs.get("scoring").rounds_done
        wait_until(lambda: jobs.get("scoring").message.startswith("waiting for approval"),
                   "the job to wait again once credit withdrew")  # fmt: skip
        assert jobs.get("scoring").rounds_done <= revoked_at + 1  # at most the round under way
        gate = audit(db, "approval.gate")
        assert gate[-1].outcome == "waiting" and "credit (revoked)" in gate[-1].detail["reason"]

        # A purpose credit's policy does not allow: its node refuses, risk's node trains.
        _ok("job", "submit", str(_job(tmp_path / "a.yaml", "ads", "marketing", 1, False)), *w)
        wait_until(lambda: jobs.get("ads").status.value in ("completed", "failed"), "job ads")
        assert jobs.get("ads").status.value == "completed", jobs.get("ads").message
        last = [r for r in jobs.rounds("ads") if r.version_id][-1]
        assert [p.node_id for p in last.participants] == ["r1"]
        (dropped,) = last.dropped
        assert dropped.node_id == "c1" and dropped.reason.startswith("refused: ")
        assert "purpose_not_allowed" in dropped.reason and "marketing" in dropped.reason
        refused = audit(db, "task.refused")
        assert refused and {r.actor for r in refused} == {"c1"}
        assert refused[0].departments == ("credit",) and refused[0].outcome == "refused"
    procs.started[1].wait_for_output("refused a task")
    assert "purpose_not_allowed" in procs.started[1].output()
