"""REST API: a job waits for department heads' approval; a revocation stops the next round."""

from __future__ import annotations

from api_support import Federation, noop_job, wait_until

PURPOSE = "credit scoring"


def _statuses(c: object, job: str) -> dict[str, str]:
    import httpx

    assert isinstance(c, httpx.Client)
    return {a["department"]: a["status"] for a in c.get("/api/v1/approvals",
                                                          params={"job": job}).json()}  # fmt: skip


def test_a_job_runs_only_on_approved_departments(fed: Federation, tokens: dict[str, str]) -> None:
    spec = noop_job("gated", rounds=500, approval=PURPOSE).replace(
        "params: 100", "params: 100, sleep_s: 0.2"
    )
    admin = fed.client(tokens["admin"])
    credit = fed.client(tokens["head"])
    risk = fed.client(tokens["risk"])
    with admin, credit, risk:
        r = admin.post("/api/v1/jobs", json={"spec_yaml": spec})
        assert r.status_code == 201 and r.json()["requires_approval"] is True
        wait_until(lambda: _statuses(admin, "gated") == {"credit": "pending", "risk": "pending"},
                   "approval requests for both departments")  # fmt: skip
        job = wait_until(lambda: (j := admin.get("/api/v1/jobs/gated").json())["message"] and j,
                         "the job's waiting message")  # fmt: skip
        assert job["message"].startswith("waiting for approval") and job["rounds_done"] == 0
        # The head of credit sees only credit's request; an admin cannot consent for them.
        assert [a["department"] for a in credit.get("/api/v1/approvals").json()] == ["credit"]
        denied = admin.post("/api/v1/approvals/gated/credit/approve", json={"purpose": PURPOSE})
        assert denied.status_code == 403 and "only the department's head" in denied.json()["detail"]
        assert risk.post("/api/v1/approvals/gated/credit/approve",
                         json={"purpose": PURPOSE}).status_code == 403  # fmt: skip
        wrong = credit.post("/api/v1/approvals/gated/credit/approve", json={"purpose": "ads"})
        assert (
            wrong.status_code == 409 and "approve the purpose requested" in wrong.json()["detail"]
        )
        ok = credit.post("/api/v1/approvals/gated/credit/approve", json={"purpose": PURPOSE})
        assert ok.status_code == 200 and ok.json()["status"] == "approved"
        assert ok.json()["decided_by"] == "hugo"
        wait_until(lambda: admin.get("/api/v1/jobs/gated").json()["rounds_done"] >= 2, "2 rounds")
        rounds = admin.get("/api/v1/jobs/gated/rounds").json()
        done = [r for r in rounds if r["version_id"]]
        assert done and all([p["node_id"] for p in r["participants"]] == ["c1"] for r in done)
        # Risk joins once its head approves too.
        assert risk.post("/api/v1/approvals/gated/risk/approve",
                         json={"purpose": PURPOSE}).status_code == 200  # fmt: skip

        def both() -> bool:
            rs = admin.get("/api/v1/jobs/gated/rounds").json()
            return any({p["node_id"] for p in r["participants"]} == {"c1", "r1"} for r in rs)

        wait_until(both, "a round with both departments")
        # Credit withdraws: from the next round on only risk takes part.
        revoked = credit.post("/api/v1/approvals/gated/credit/revoke",
                              json={"reason": "audit season"})  # fmt: skip
        assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
        after = admin.get("/api/v1/jobs/gated").json()["rounds_done"]
        wait_until(lambda: admin.get("/api/v1/jobs/gated").json()["rounds_done"] >= after + 2,
                   "two more rounds")  # fmt: skip
        later = [r for r in admin.get("/api/v1/jobs/gated/rounds").json()
                 if r["version_id"] and r["round_no"] > after + 1]  # fmt: skip
        assert later and all([p["node_id"] for p in r["participants"]] == ["r1"] for r in later)
        gate = admin.get("/api/v1/audit", params={"action": "approval.gate"}).json()
        assert any(g["outcome"] == "excluded" and g["departments"] == ["credit"] for g in gate)
        assert any(g["outcome"] == "waiting" for g in gate)
        assert admin.post("/api/v1/jobs/gated/cancel").status_code == 200


def test_approval_changes_are_audited(fed: Federation, tokens: dict[str, str]) -> None:
    with fed.client(tokens["auditor"]) as c:
        grants = c.get("/api/v1/audit", params={"action": "approval.grant"}).json()
        revokes = c.get("/api/v1/audit", params={"action": "approval.revoke"}).json()
        assert c.post("/api/v1/approvals/gated/risk/revoke",
                      json={"reason": "x"}).status_code == 403  # fmt: skip
    assert {(g["actor"], g["outcome"]) for g in grants} >= {
        ("hugo", "allowed"),
        ("rita", "allowed"),
    }
    assert any(g["actor"] == "ada" and g["outcome"] == "denied" for g in grants)
    assert [(r["actor"], r["detail"]["reason"]) for r in revokes] == [("hugo", "audit season")]
