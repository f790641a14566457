"""REST API: submit, watch, cancel jobs; rounds, versions with lineage, contributions."""

from __future__ import annotations

import pytest
from api_support import Federation, noop_job, wait_until


@pytest.fixture(scope="module")
def done_job(fed: Federation, tokens: dict[str, str]) -> str:
    """A two-round no-op job, completed."""
    with fed.client(tokens["admin"]) as c:
        r = c.post("/api/v1/jobs", json={"spec_yaml": noop_job("trial", rounds=2)})
        assert r.status_code == 201, r.text
        assert r.headers["location"] == "/api/v1/jobs/trial"
        assert r.json()["status"] == "running"
        wait_until(lambda: c.get("/api/v1/jobs/trial").json()["status"] == "completed",
                   "job trial to complete")  # fmt: skip
    return "trial"


def test_an_admin_sees_the_whole_job(
    fed: Federation, tokens: dict[str, str], done_job: str
) -> None:
    with fed.client(tokens["admin"]) as c:
        job = c.get(f"/api/v1/jobs/{done_job}").json()
        assert (job["rounds_done"], job["rounds_total"]) == (2, 2)
        assert job["departments"] == ["credit", "risk"] and "noop" in job["spec_yaml"]
        assert done_job in [j["job_id"] for j in c.get("/api/v1/jobs").json()]
        rounds = c.get(f"/api/v1/jobs/{done_job}/rounds").json()
        assert [r["round_no"] for r in rounds] == [1, 2]
        assert {p["department"] for p in rounds[0]["participants"]} == {"credit", "risk"}
        versions = c.get(f"/api/v1/jobs/{done_job}/versions").json()
        assert [v["version_id"] for v in versions] == ["trial@v1", "trial@v2"]
        lineage = c.get("/api/v1/versions/trial@v2").json()
        assert lineage["lineage"] == ["trial@v2", "trial@v1"]
        assert lineage["version"]["parent_version_id"] == "trial@v1"
        contributions = c.get(f"/api/v1/jobs/{done_job}/contributions").json()
        assert {(x["version_id"], x["department"]) for x in contributions} == {
            (v, d) for v in ("trial@v1", "trial@v2") for d in ("credit", "risk")
        }
        assert all(x["sample_share"] == pytest.approx(0.5) for x in contributions)
        # The contribution ledger records each round: both nodes kept, at equal weight.
        assert {(x["source"], x["node_id"], x["action"]) for x in contributions} == {
            ("ledger", "c1", "kept"), ("ledger", "r1", "kept"),
        }  # fmt: skip
        assert all(x["share"] == pytest.approx(0.5) for x in contributions)


def test_a_head_sees_their_department_slice(
    fed: Federation, tokens: dict[str, str], done_job: str
) -> None:
    with fed.client(tokens["head"]) as c:
        job = c.get(f"/api/v1/jobs/{done_job}").json()
        assert job["departments"] == ["credit"] and job["spec_yaml"] is None
        rounds = c.get(f"/api/v1/jobs/{done_job}/rounds").json()
        assert all({p["department"] for p in r["participants"]} == {"credit"} for r in rounds)
        assert all(r["metrics"] == {} for r in rounds)
        v = c.get("/api/v1/versions/trial@v1").json()["version"]
        assert [p["node_id"] for p in v["participants"]] == ["c1"]
        contributions = c.get(f"/api/v1/jobs/{done_job}/contributions").json()
        assert {x["department"] for x in contributions} == {"credit"}
        assert c.post(f"/api/v1/jobs/{done_job}/cancel").status_code == 403
        assert c.post("/api/v1/jobs", json={"spec_yaml": noop_job("mine")}).status_code == 403
    with fed.client(tokens["other"]) as c:  # a department the job does not touch
        r = c.get(f"/api/v1/jobs/{done_job}")
        assert r.status_code == 403 and "ops" in r.json()["detail"]
        assert c.get(f"/api/v1/jobs/{done_job}/versions").status_code == 403
    with fed.client(tokens["employee"]) as c:
        assert c.get(f"/api/v1/jobs/{done_job}/rounds").status_code == 403


def test_cancel_stops_a_running_job(fed: Federation, tokens: dict[str, str]) -> None:
    spec = noop_job("long", rounds=10_000).replace("params: 100", "params: 100, sleep_s: 0.2")
    with fed.client(tokens["admin"]) as c:
        assert c.post("/api/v1/jobs", json={"spec_yaml": spec}).status_code == 201
        wait_until(lambda: c.get("/api/v1/jobs/long").json()["rounds_done"] >= 1, "a round")
        r = c.post("/api/v1/jobs/long/cancel")
        assert r.status_code == 200 and r.json()["status"] == "cancelled"
        again = c.post("/api/v1/jobs/long/cancel")
        assert again.status_code == 409 and "already cancelled" in again.json()["detail"]
        submits = c.get("/api/v1/audit", params={"action": "job.cancel"}).json()
        assert any(r["actor"] == "ada" and r["outcome"] == "allowed" for r in submits)


def test_prometheus_metrics_count_rounds_bytes_and_liveness(
    fed: Federation, tokens: dict[str, str], done_job: str
) -> None:
    with fed.client(tokens["admin"]) as c:
        r = c.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith(
        "text/plain; version=0.0.4"
    )
    lines = r.text.splitlines()
    assert f'clawfed_rounds_total{{job="{done_job}"}} 2' in lines
    assert "# TYPE clawfed_round_duration_seconds histogram" in lines
    count = [ln for ln in lines if ln.startswith("clawfed_round_duration_seconds_count ")]
    assert count and int(count[0].split()[1]) >= 2
    assert 'clawfed_round_duration_seconds_bucket{le="+Inf"}' in r.text
    assert 'clawfed_node_up{node="c1",department="credit"} 1' in lines
    assert 'clawfed_node_up{node="r1",department="risk"} 1' in lines
    down = [ln for ln in lines if ln.startswith('clawfed_bytes_total{direction="down"}')]
    assert down and float(down[0].split()[1]) > 0
    assert "# TYPE clawfed_rejected_updates_total counter" in lines
