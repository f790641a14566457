"""REST API: what each role sees of the federation, nodes, datasets, audit and its own profile."""

from __future__ import annotations

from api_support import Federation


def test_admin_sees_every_node_and_dataset(fed: Federation, tokens: dict[str, str]) -> None:
    with fed.client(tokens["admin"]) as c:
        nodes = c.get("/api/v1/nodes").json()
        assert {(n["node_id"], n["department"], n["connected"]) for n in nodes} == {
            ("c1", "credit", True), ("r1", "risk", True),
        }  # fmt: skip
        overview = c.get("/api/v1/federation").json()
        assert overview["departments"] == ["credit", "risk"] and overview["nodes_live"] == 2
        datasets = c.get("/api/v1/datasets").json()
        assert {(d["node_id"], d["name"]) for d in datasets} == {("c1", "loans"), ("r1", "loans")}
        assert all("rows" in str(d["metadata"]) or d["metadata"] for d in datasets)
        assert c.get("/api/v1/nodes/r1").json()["department"] == "risk"


def test_a_head_sees_only_their_department(fed: Federation, tokens: dict[str, str]) -> None:
    with fed.client(tokens["head"]) as c:
        assert [n["node_id"] for n in c.get("/api/v1/nodes").json()] == ["c1"]
        assert [d["node_id"] for d in c.get("/api/v1/datasets").json()] == ["c1"]
        overview = c.get("/api/v1/federation").json()
        assert overview["departments"] == ["credit"] and overview["nodes_total"] == 1
        denied = c.get("/api/v1/nodes/r1")
        assert denied.status_code == 403 and "risk" in denied.json()["detail"]
        assert c.get("/api/v1/audit").status_code == 403  # the whole log spans departments
        own = c.get("/api/v1/audit", params={"department": "credit"})
        assert own.status_code == 200
        assert all("credit" in r["departments"] for r in own.json())
        assert c.get("/api/v1/audit", params={"department": "risk"}).status_code == 403
        assert c.get("/api/v1/audit/verify").status_code == 403
        assert c.get("/metrics").status_code == 403


def test_an_employee_sees_no_federation_data(fed: Federation, tokens: dict[str, str]) -> None:
    with fed.client(tokens["employee"]) as c:
        for path in ("/api/v1/nodes", "/api/v1/datasets", "/api/v1/federation", "/api/v1/jobs",
                     "/api/v1/audit", "/api/v1/approvals", "/metrics"):  # fmt: skip
            assert c.get(path).status_code == 403, path
        me = c.get("/api/v1/me").json()
        assert me == {"user_id": "emma", "display_name": "", "role": "employee",
                      "department": "credit", "entitlements": []}  # fmt: skip


def test_an_auditor_reads_and_verifies_the_audit_log(
    fed: Federation, tokens: dict[str, str]
) -> None:
    with fed.client(tokens["auditor"]) as c:
        assert c.get("/api/v1/nodes").status_code == 403
        records = c.get("/api/v1/audit", params={"limit": 500}).json()
        assert any(r["action"] == "connect" for r in records)
        verified = c.get("/api/v1/audit/verify").json()
        assert verified["ok"] is True and verified["checked"] >= len(records)
        assert verified["head_hash"] and len(verified["head_hash"]) == 64


def test_denials_are_written_to_the_audit_chain(fed: Federation, tokens: dict[str, str]) -> None:
    with fed.client(tokens["employee"]) as c:
        assert c.get("/api/v1/nodes/c1").status_code == 403
    with fed.client(tokens["admin"]) as c:
        records = c.get("/api/v1/audit", params={"action": "node.view"}).json()
    denied = [r for r in records if r["actor"] == "emma" and r["outcome"] == "denied"]
    assert denied and denied[0]["resource"] == "node:c1" and denied[0]["detail"]["via"] == "api"
