"""The API's small parts on their own: metrics text, sessions, the error catalog, live events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from clawfed.api.events import to_live
from clawfed.api.metrics import FederationMetrics, NodeUp
from clawfed.api.problems import from_error
from clawfed.api.sessions import SESSION_LIFETIME, SessionBook
from clawfed.coordinator.round_records import Participant, RoundReport
from clawfed.core import ConfigError, JobError, NotFoundError, StoreError
from clawfed.governance.policy import Action, PermissionDenied, Resource, Role, User, decide
from clawfed.governance.users import AuthenticationError, AuthFailure


def test_metrics_render_the_text_exposition_format() -> None:
    m = FederationMetrics(buckets=(1.0, 10.0))
    m.round_done("fraud", 0.5, 100, 40)
    m.round_done("fraud", 5.0, 100, 60)
    m.round_done('we"ird\njob', 50.0, 0, 0)
    m.update_rejected("nan")
    m.node_dropped("refused")
    text = m.render([NodeUp("c1", "credit", True), NodeUp("r1", "risk", False)])
    lines = text.splitlines()
    assert 'clawfed_rounds_total{job="fraud"} 2' in lines
    assert 'clawfed_rounds_total{job="we\\"ird\\njob"} 1' in lines
    assert 'clawfed_bytes_total{direction="down"} 200' in lines
    assert 'clawfed_bytes_total{direction="up"} 100' in lines
    assert [ln for ln in lines if ln.startswith("clawfed_round_duration_seconds_bucket")] == [
        'clawfed_round_duration_seconds_bucket{le="1"} 1',
        'clawfed_round_duration_seconds_bucket{le="10"} 2',
        'clawfed_round_duration_seconds_bucket{le="+Inf"} 3',
    ]
    assert "clawfed_round_duration_seconds_sum 55.5" in lines
    assert "clawfed_round_duration_seconds_count 3" in lines
    assert 'clawfed_rejected_updates_total{reason="nan"} 1' in lines
    assert 'clawfed_dropped_nodes_total{reason="refused"} 1' in lines
    assert 'clawfed_node_up{node="r1",department="risk"} 0' in lines
    assert text.endswith("\n") and "# TYPE clawfed_node_up gauge" in lines
    with pytest.raises(ValueError, match="strictly increasing"):
        FederationMetrics(buckets=(5.0, 1.0))


def test_sessions_expire_and_close() -> None:
    now = [datetime(2026, 1, 1, tzinfo=UTC)]
    book = SessionBook(clock=lambda: now[0])
    s = book.open("hugo", "0123456789abcdef")
    assert book.get(s.session_id) == s and len(s.csrf) >= 24 and s.session_id != s.csrf
    assert book.get(None) is None and book.get("forged") is None
    now[0] += SESSION_LIFETIME + timedelta(seconds=1)
    assert book.get(s.session_id) is None
    t = book.open("hugo", "0123456789abcdef")
    book.close(t.session_id)
    assert book.get(t.session_id) is None


def test_internal_errors_map_to_http_problems() -> None:
    head = User("hugo", Role.DEPARTMENT_HEAD, "credit")
    res = Resource.node("r1", "risk")
    denied = PermissionDenied(head, Action.VIEW_NODE, res, decide(head, Action.VIEW_NODE, res))
    cases = [
        (AuthenticationError(AuthFailure.EXPIRED, "token expired"), 401, "unauthenticated"),
        (denied, 403, "forbidden"),
        (NotFoundError("job 'x' does not exist"), 404, "not-found"),
        (ConfigError("rounds must be >= 1"), 422, "invalid"),
        (StoreError("already approved"), 409, "conflict"),
        (JobError("job x is already cancelled"), 409, "conflict"),
    ]
    for exc, status, slug in cases:
        problem = from_error(exc)
        assert (problem.status, problem.slug) == (status, slug), exc
    assert "risk" in from_error(denied).detail and "expired" in from_error(cases[0][0]).detail


def test_round_events_carry_per_department_metrics_and_samples() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    report = RoundReport(
        "fraud", 3, 1, at, at + timedelta(seconds=2),
        (Participant("c1", "credit", 10, {"loss": 1.0}), Participant("c2", "credit", 30,
         {"loss": 3.0}), Participant("r1", "risk", 5, {"loss": 0.5})), (), (), 10, 20,
    )  # fmt: skip
    event = to_live("round_completed", {"job_id": "fraud", "version": "fraud@v3",
                                        "report": report}, {})  # fmt: skip
    assert event.departments == {"credit", "risk"} and event.job_id == "fraud"
    assert event.data["departments"] == {"credit": {"loss": 2.5}, "risk": {"loss": 0.5}}
    assert event.data["samples"] == {"credit": 40, "risk": 5} and event.data["round"] == 3
    sse = event.sse()
    assert sse.startswith("event: round_completed\ndata: {") and sse.endswith("\n\n")
    dropped = to_live("node_dropped", {"job_id": "fraud", "node_id": "r1", "reason": "refused"},
                      {"r1": "risk"})  # fmt: skip
    assert dropped.departments == {"risk"} and dropped.data["reason"] == "refused"
