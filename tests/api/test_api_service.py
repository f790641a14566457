"""REST API: the model service for entitled users; nodes refusing tasks outside their policy."""

from __future__ import annotations

import pytest
from api_support import Federation, wait_until

from clawfed.governance.policy import Role


def _job(name: str, purpose: str, rounds: int = 2) -> str:
    return (
        f"name: {name}\nmodel: {{name: logistic_regression}}\ndataset: loans\n"
        f"purpose: {purpose}\ndata: {{target: y, features: [x1, x2]}}\nrounds: {rounds}\n"
        "min_nodes: 1\nround_deadline_s: 30\nmax_retries: 0\ntrain: {epochs: 3, lr: 0.5}\n"
    )


@pytest.fixture(scope="module")
def admin(tokens: dict[str, str]) -> str:
    return tokens["admin"]


@pytest.fixture(scope="module")
def scoring(fed: Federation, admin: str) -> str:
    with fed.client(admin) as c:
        assert c.post("/api/v1/jobs", json={"spec_yaml": _job("scoring", "credit scoring")}
                      ).status_code == 201  # fmt: skip
        job = wait_until(lambda: (j := c.get("/api/v1/jobs/scoring").json())["status"]
                         in ("completed", "failed") and j, "job scoring to end")  # fmt: skip
    assert job["status"] == "completed", job["message"]
    return "scoring"


def test_entitled_users_get_predictions(fed: Federation, admin: str, scoring: str) -> None:
    sam = fed.add_user("sam", Role.EMPLOYEE, "credit", entitlements=[scoring])
    fred = fed.add_user("fred", Role.EMPLOYEE, "credit")
    rows = [{"x1": 2.0, "x2": 1.0}, {"x1": -2.0, "x2": -1.0}]
    with fed.client(sam) as c:
        r = c.post(f"/api/v1/services/{scoring}/predict", json={"rows": rows})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["version_id"] == "scoring@v2" and len(body["predictions"]) == 2
        high, low = (p[0] for p in body["predictions"])
        assert 0.0 <= low < 0.5 < high <= 1.0  # the label is x1 + x2/2 > 0
        older = c.post(f"/api/v1/services/{scoring}/predict",
                       json={"rows": rows, "version_id": "scoring@v1"})  # fmt: skip
        assert older.json()["version_id"] == "scoring@v1"
        missing = c.post(f"/api/v1/services/{scoring}/predict", json={"rows": [{"x1": 1}]})
        assert missing.status_code == 422 and "x2" in missing.json()["detail"]
        bad = c.post(f"/api/v1/services/{scoring}/predict", json={"rows": []})
        assert bad.status_code == 422
        assert c.get(f"/api/v1/jobs/{scoring}").status_code == 403  # predictions, not the job
    with fed.client(fred) as c:
        r = c.post(f"/api/v1/services/{scoring}/predict", json={"rows": rows})
        assert r.status_code == 403 and "not entitled" in r.json()["detail"]
    with fed.client(admin) as c:
        uses = c.get("/api/v1/audit", params={"action": "model.predict"}).json()
    assert {(u["actor"], u["outcome"]) for u in uses} == {("sam", "allowed"), ("fred", "denied")}


def test_a_node_refuses_a_purpose_its_policy_does_not_allow(fed: Federation, admin: str) -> None:
    with fed.client(admin) as c:
        assert c.post("/api/v1/jobs", json={"spec_yaml": _job("ads", "marketing", rounds=1)}
                      ).status_code == 201  # fmt: skip
        job = wait_until(lambda: (j := c.get("/api/v1/jobs/ads").json())["status"]
                         in ("completed", "failed") and j, "job ads to end")  # fmt: skip
        rounds = c.get("/api/v1/jobs/ads/rounds").json()
        refusals = c.get("/api/v1/audit", params={"action": "task.refused"}).json()
    assert job["status"] == "completed"
    assert [p["node_id"] for p in rounds[-1]["participants"]] == ["r1"]
    dropped = rounds[-1]["dropped"]
    assert [d["node_id"] for d in dropped] == ["c1"]
    assert dropped[0]["reason"].startswith("refused: ") and "marketing" in dropped[0]["reason"]
    assert refusals and refusals[0]["actor"] == "c1" and refusals[0]["departments"] == ["credit"]
    assert "purpose_not_allowed" in refusals[0]["detail"]["detail"]
