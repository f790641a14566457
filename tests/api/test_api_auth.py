"""REST API: bearer tokens, problem details for every error, the OpenAPI schema."""

from __future__ import annotations

import pytest
from api_support import Federation, noop_job

from clawfed.governance.policy import Role

PROBLEM = "application/problem+json"
FIELDS = {"type", "title", "status", "detail", "instance"}


def _problem(response: object, status: int, slug: str) -> dict[str, object]:
    import httpx

    assert isinstance(response, httpx.Response)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert set(body) == FIELDS
    assert body["status"] == status and body["type"] == f"urn:clawfed:problem:{slug}"
    assert body["instance"] == response.request.url.path
    assert isinstance(body["detail"], str) and body["detail"]
    return dict(body)


def test_no_token_is_401_with_problem_details(fed: Federation) -> None:
    with fed.client() as c:
        r = c.get("/api/v1/nodes")
    body = _problem(r, 401, "unauthenticated")
    assert "Bearer" in str(body["detail"]) and r.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    ("header", "why"),
    [
        ("Basic abc", "must be 'Bearer <API token>'"),
        ("Bearer nonsense", "malformed"),
        ("Bearer cfd_0123456789abcdef_" + "A" * 43, "unknown"),
    ],
)
def test_bad_tokens_are_401(fed: Federation, header: str, why: str) -> None:
    with fed.client() as c:
        r = c.get("/api/v1/nodes", headers={"Authorization": header})
    assert why in str(_problem(r, 401, "unauthenticated")["detail"])


def test_a_revoked_token_stops_working(fed: Federation) -> None:
    token = fed.add_user("gone", Role.DATA_ADMIN)
    with fed.client(token) as c:
        assert c.get("/api/v1/nodes").status_code == 200
        from clawfed.governance.users import UserDirectory

        with fed.db() as db:
            UserDirectory(db).revoke_token(token.split("_")[1], "lost laptop")
        assert "revoked" in str(_problem(c.get("/api/v1/nodes"), 401, "unauthenticated")["detail"])


def test_errors_are_problem_details(fed: Federation) -> None:
    admin = fed.add_user("pat", Role.DATA_ADMIN)
    employee = fed.add_user("eve", Role.EMPLOYEE, "credit")
    with fed.client(admin) as c:
        _problem(c.get("/api/v1/nothing-here"), 404, "not-found")
        body = _problem(c.get("/api/v1/jobs/no-such-job"), 404, "not-found")
        assert "no-such-job" in str(body["detail"])
        body = _problem(c.post("/api/v1/jobs", json={"spec": "x"}), 422, "invalid")
        assert "spec_yaml" in str(body["detail"])
        body = _problem(c.post("/api/v1/jobs", json={"spec_yaml": "name: x\nrounds: 0\n"}),
                        422, "invalid")  # fmt: skip
        assert "rounds" in str(body["detail"])
        assert (
            c.post("/api/v1/jobs", json={"spec_yaml": noop_job("twice", rounds=1)}).status_code
            == 201
        )
        body = _problem(c.post("/api/v1/jobs", json={"spec_yaml": noop_job("twice", rounds=1)}),
                        409, "conflict")  # fmt: skip
        assert "already exists" in str(body["detail"])
        _problem(c.get("/api/v1/audit", params={"limit": 0}), 422, "invalid")
    with fed.client(employee) as c:
        body = _problem(c.get("/api/v1/nodes"), 403, "forbidden")
        assert "employee" in str(body["detail"])


def test_the_openapi_schema_lists_every_endpoint(fed: Federation) -> None:
    with fed.client() as c:
        schema = c.get("/api/v1/openapi.json").json()
    paths = set(schema["paths"])
    for path in (
        "/api/v1/federation", "/api/v1/nodes", "/api/v1/datasets", "/api/v1/jobs",
        "/api/v1/jobs/{job_id}", "/api/v1/jobs/{job_id}/cancel", "/api/v1/jobs/{job_id}/rounds",
        "/api/v1/jobs/{job_id}/versions", "/api/v1/versions/{version_id}",
        "/api/v1/jobs/{job_id}/contributions", "/api/v1/audit", "/api/v1/audit/verify",
        "/api/v1/approvals", "/api/v1/approvals/{job_id}/{department}/approve",
        "/api/v1/approvals/{job_id}/{department}/revoke", "/api/v1/services/{job_id}/predict",
        "/metrics",
    ):  # fmt: skip
        assert path in paths, path
    assert not any(p.startswith("/dashboard") for p in paths)
