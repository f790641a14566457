"""NodeRegistry: enrollment, revocation, serial checks and liveness."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from governance_support import StepClock

from clawfed.core.errors import NotFoundError, StoreError
from clawfed.governance import Database, NodeRegistry, sqlite_url

FP = "0123456789abcdef" * 4
BIG_SERIAL = 2**159 - 1  # the largest serial RFC 5280 allows: needs 160 bits signed


@pytest.fixture
def nodes(db: Database, clock: StepClock) -> NodeRegistry:
    return NodeRegistry(db, clock=clock)


def test_enroll_and_get_round_trip_a_159_bit_serial(nodes: NodeRegistry) -> None:
    rec = nodes.enroll("credit-1", "信贷部", BIG_SERIAL, FP.upper())
    got = nodes.get("credit-1")
    assert got == rec
    assert got.cert_serial == BIG_SERIAL
    assert got.department == "信贷部"
    assert got.fingerprint == FP
    assert got.enrolled_at.tzinfo is not None
    assert not got.revoked and not got.connected and got.last_seen_at is None
    assert nodes.find_by_serial(BIG_SERIAL).node_id == "credit-1"


def test_fingerprint_with_colons_is_normalized(nodes: NodeRegistry) -> None:
    colon = ":".join(FP[i : i + 2] for i in range(0, 64, 2))
    assert nodes.enroll("n", "d", 1, colon).fingerprint == FP


@pytest.mark.parametrize(
    ("serial", "rule"),
    [(0, "1 … 2\\*\\*159-1"), (-5, "1 … 2\\*\\*159-1"), (2**159, "1 … 2\\*\\*159-1"),
     (True, "must be an int"), ("12", "must be an int")],
)  # fmt: skip
def test_bad_serials_are_refused(nodes: NodeRegistry, serial: object, rule: str) -> None:
    with pytest.raises(StoreError, match=rule):
        nodes.enroll("n", "d", serial, FP)  # type: ignore[arg-type]


@pytest.mark.parametrize("fp", ["", "xyz", "ab" * 31, "ab" * 33, "gg" * 32])
def test_bad_fingerprints_are_refused(nodes: NodeRegistry, fp: str) -> None:
    with pytest.raises(StoreError, match="fingerprint must be a SHA-256"):
        nodes.enroll("n", "d", 1, fp)


@pytest.mark.parametrize("node_id", ["", "  ", " lead", "x" * 129])
def test_bad_node_ids_are_refused(nodes: NodeRegistry, node_id: str) -> None:
    with pytest.raises(StoreError, match="node_id"):
        nodes.enroll(node_id, "d", 1, FP)


def test_enrolling_twice_names_the_node(nodes: NodeRegistry) -> None:
    nodes.enroll("credit-1", "credit", 10, FP)
    with pytest.raises(StoreError, match="'credit-1' is already enrolled"):
        nodes.enroll("credit-1", "credit", 11, FP)
    assert nodes.get("credit-1").cert_serial == 10


def test_a_serial_cannot_belong_to_two_nodes(nodes: NodeRegistry) -> None:
    nodes.enroll("a", "credit", 10, FP)
    with pytest.raises(StoreError, match="serial 10 is already held by node 'a'"):
        nodes.enroll("b", "credit", 10, FP)


def test_replace_supersedes_the_old_certificate(nodes: NodeRegistry) -> None:
    nodes.enroll("a", "credit", 10, FP)
    rec = nodes.enroll("a", "risk", 11, FP, replace=True)
    assert (rec.cert_serial, rec.department) == (11, "risk")
    assert nodes.is_revoked_serial(10)
    assert not nodes.is_revoked_serial(11)
    assert not nodes.is_revoked("a")
    with pytest.raises(StoreError, match="serial 10 was revoked"):
        nodes.enroll("a", "credit", 10, FP, replace=True)


def test_revoke_sets_time_reason_and_revokes_the_serial(nodes: NodeRegistry) -> None:
    nodes.enroll("a", "credit", 10, FP)
    nodes.set_connected("a", True)
    rec = nodes.revoke("a", "laptop stolen")
    assert rec.revoked and rec.revoke_reason == "laptop stolen"
    assert rec.revoked_at is not None and rec.revoked_at.tzinfo is not None
    assert not rec.connected
    assert nodes.is_revoked("a")
    assert nodes.is_revoked_serial(10)
    with pytest.raises(StoreError, match="already revoked"):
        nodes.revoke("a", "again")
    with pytest.raises(StoreError, match="revoked and cannot be marked connected"):
        nodes.set_connected("a", True)


def test_revoked_node_can_re_enroll_only_with_replace_and_a_new_serial(
    nodes: NodeRegistry,
) -> None:
    nodes.enroll("a", "credit", 10, FP)
    nodes.revoke("a", "compromised")
    with pytest.raises(StoreError, match="already enrolled"):
        nodes.enroll("a", "credit", 12, FP)
    with pytest.raises(StoreError, match="serial 10 was revoked"):
        nodes.enroll("a", "credit", 10, FP, replace=True)
    rec = nodes.enroll("a", "credit", 12, FP, replace=True)
    assert not rec.revoked and rec.revoke_reason is None
    assert nodes.is_revoked_serial(10) and not nodes.is_revoked_serial(12)


def test_unknown_nodes_raise_not_found(nodes: NodeRegistry) -> None:
    now = datetime.now(UTC)
    for call in (
        lambda: nodes.get("ghost"),
        lambda: nodes.revoke("ghost", "r"),
        lambda: nodes.is_revoked("ghost"),
        lambda: nodes.mark_seen("ghost", now),
        lambda: nodes.set_connected("ghost", True),
        lambda: nodes.find_by_serial(99),
    ):
        with pytest.raises(NotFoundError):
            call()
    assert not nodes.is_revoked_serial(99)


def test_revoke_needs_a_reason(nodes: NodeRegistry) -> None:
    nodes.enroll("a", "credit", 10, FP)
    with pytest.raises(StoreError, match="revocation reason must not be empty"):
        nodes.revoke("a", " ")
    assert not nodes.is_revoked("a")


def test_mark_seen_keeps_the_latest_aware_time(nodes: NodeRegistry) -> None:
    nodes.enroll("a", "credit", 10, FP)
    t1 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    nodes.mark_seen("a", t1.astimezone(tz=None))
    nodes.mark_seen("a", t1 - timedelta(minutes=5))
    assert nodes.get("a").last_seen_at == t1
    with pytest.raises(StoreError, match="timezone-aware"):
        nodes.mark_seen("a", datetime(2026, 5, 1, 12, 0))


def test_list_orders_by_id_and_filters_by_department(nodes: NodeRegistry) -> None:
    nodes.enroll("c", "audit", 3, FP)
    nodes.enroll("a", "credit", 1, FP)
    nodes.enroll("b", "credit", 2, FP)
    nodes.set_connected("b", True)
    assert [n.node_id for n in nodes.list()] == ["a", "b", "c"]
    assert [(n.node_id, n.connected) for n in nodes.list("credit")] == [("a", False), ("b", True)]
    nodes.set_connected("b", False)
    assert not nodes.get("b").connected


def test_a_new_database_object_sees_everything(db_path: Path, clock: StepClock) -> None:
    with Database(sqlite_url(db_path)) as first:
        first.create_all()
        reg = NodeRegistry(first, clock=clock)
        reg.enroll("a", "credit", BIG_SERIAL, FP)
        reg.enroll("b", "audit", 2, FP)
        reg.revoke("b", "left")
        expected = reg.list()
    with Database(sqlite_url(db_path)) as second:
        again = NodeRegistry(second)
        assert again.list() == expected
        assert again.is_revoked_serial(2) and again.get("a").cert_serial == BIG_SERIAL
