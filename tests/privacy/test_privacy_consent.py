"""The node-side consent registry: grants, revocations, filters and the JSONL event file."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest

from clawfed.core import ConfigError, DataError
from clawfed.privacy import ConsentError, ConsentRecord, ConsentRegistry

T0 = datetime(2025, 1, 1, tzinfo=UTC)
PURPOSE = "fraud-model-training"


def at(days: float) -> datetime:
    return T0 + timedelta(days=days)


def test_consent_holds_from_grant_until_revocation() -> None:
    reg = ConsentRegistry()
    reg.grant("c1", PURPOSE, at(0))
    assert not reg.has_consent("c1", PURPOSE, at(-1))
    assert reg.has_consent("c1", PURPOSE, at(0))
    assert reg.has_consent("c1", PURPOSE, at(10))
    rec = reg.revoke("c1", PURPOSE, at(20))
    assert rec.revoked_at == at(20)
    assert reg.has_consent("c1", PURPOSE, at(19.9))
    assert not reg.has_consent("c1", PURPOSE, at(20))  # revocation is exclusive
    assert not reg.has_consent("c1", "marketing", at(10))  # purposes are separate


def test_consent_can_be_given_again_after_revocation() -> None:
    reg = ConsentRegistry()
    reg.grant("c1", PURPOSE, at(0))
    reg.revoke("c1", PURPOSE, at(5))
    reg.grant("c1", PURPOSE, at(10))
    assert [r.revoked_at for r in reg.records("c1")] == [at(5), None]
    assert not reg.has_consent("c1", PURPOSE, at(7))
    assert reg.has_consent("c1", PURPOSE, at(11))


def test_filters_keep_only_consenting_subjects_at_the_time() -> None:
    reg = ConsentRegistry()
    reg.grant("a", PURPOSE, at(0))
    reg.grant("b", PURPOSE, at(0))
    reg.revoke("b", PURPOSE, at(3))
    reg.grant("c", "marketing", at(0))
    reg.grant("d", PURPOSE, at(9))
    assert reg.consenting(PURPOSE, at(5)) == frozenset({"a"})
    assert reg.consenting(PURPOSE, at(2)) == frozenset({"a", "b"})
    rows = [("a", 1), ("b", 2), ("c", 3), ("d", 4), ("a", 5)]
    assert reg.filter(rows, lambda r: r[0], PURPOSE, at(5)) == [("a", 1), ("a", 5)]
    frame = pd.DataFrame({"customer_id": ["a", "b", "c", "d"], "amount": [1.0, 2.0, 3.0, 4.0]})
    kept = reg.filter_frame(frame, "customer_id", PURPOSE, at(10))
    assert kept["customer_id"].tolist() == ["a", "d"]
    assert kept.index.tolist() == [0, 1]
    with pytest.raises(DataError, match="subject column 'client'"):
        reg.filter_frame(frame, "client", PURPOSE, at(10))


def test_registry_persists_as_jsonl_events(tmp_path: Path) -> None:
    path = tmp_path / "consent" / "registry.jsonl"
    reg = ConsentRegistry(path)
    reg.grant("客户-1", PURPOSE, at(0))
    reg.grant("c2", PURPOSE, at(1))
    reg.revoke("c2", PURPOSE, at(2))
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3 and '"event": "revoke"' in lines[2] and "客户-1" in lines[0]
    again = ConsentRegistry(path)
    assert list(again) == list(reg)
    assert again.has_consent("客户-1", PURPOSE, at(5))
    assert not again.has_consent("c2", PURPOSE, at(5))


def test_malformed_or_inconsistent_files_are_refused_with_the_line(tmp_path: Path) -> None:
    path = tmp_path / "registry.jsonl"
    good = (
        '{"event": "grant", "subject_id": "a", "purpose": "p", "at": "2025-01-01T00:00:00+00:00"}'
    )
    path.write_text(good + "\n{not json\n", encoding="utf-8")
    with pytest.raises(DataError, match="line 2"):
        ConsentRegistry(path)
    path.write_text(good + "\n" + good + "\n", encoding="utf-8")  # granted twice
    with pytest.raises(DataError, match="line 2"):
        ConsentRegistry(path)
    naive = good.replace("+00:00", "")
    path.write_text(naive + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="time zone"):
        ConsentRegistry(path)


def test_invalid_operations_and_values_are_refused() -> None:
    reg = ConsentRegistry()
    with pytest.raises(ConfigError, match="time zone"):
        reg.grant("a", PURPOSE, datetime(2025, 1, 1))  # naive: refused
    with pytest.raises(ConfigError, match="purpose must be"):
        reg.grant("a", "Fraud Training!", at(0))
    with pytest.raises(ConfigError, match="subject_id"):
        reg.grant("", PURPOSE, at(0))
    with pytest.raises(ConsentError, match="no active consent"):
        reg.revoke("a", PURPOSE, at(1))
    reg.grant("a", PURPOSE, at(1))
    with pytest.raises(ConsentError, match="already consents"):
        reg.grant("a", PURPOSE, at(2))
    with pytest.raises(ConfigError, match="must not be before"):
        reg.revoke("a", PURPOSE, at(0))
    assert reg.has_consent("a", PURPOSE, at(3))  # the failed revocation changed nothing


def test_records_are_frozen_and_compare_across_time_zones() -> None:
    rec = ConsentRecord("a", PURPOSE, at(0))
    with pytest.raises(AttributeError):
        rec.revoked_at = at(1)  # type: ignore[misc]
    beijing = timezone(timedelta(hours=8))
    assert rec.active_at(datetime(2025, 1, 1, 8, 0, tzinfo=beijing))  # the same instant
    assert not rec.active_at(datetime(2025, 1, 1, 7, 59, tzinfo=beijing))
