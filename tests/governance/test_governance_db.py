"""Database: engine set-up, sessions, error translation and Alembic migrations."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, select, text

from clawfed.core.errors import ConfigError, StoreError
from clawfed.governance import Base, Database, JobStore, NodeRegistry, sqlite_url
from clawfed.governance.db import MIGRATIONS_DIR
from clawfed.governance.tables import NodeRow

FP = "ab" * 32


def test_sqlite_connections_use_wal_foreign_keys_and_busy_timeout(db: Database) -> None:
    with db.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 30_000


def test_session_commits_at_end_of_block(db: Database, db_path: Path) -> None:
    NodeRegistry(db).enroll("n1", "credit", 7, FP)
    with Database(sqlite_url(db_path)) as other, other.session() as s:
        assert s.scalar(select(NodeRow.node_id)) == "n1"


def test_session_rolls_back_when_block_raises(db: Database) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom), db.session() as s:
        s.execute(text("INSERT INTO jobs VALUES ('j', 'n', '', 'pending', 1, 0, '', '{}', "
                       "'2026-01-01 00:00:00', '2026-01-01 00:00:00')"))  # fmt: skip
        raise Boom
    assert JobStore(db).list() == []


def test_integrity_error_becomes_store_error(db: Database) -> None:
    with pytest.raises(StoreError, match="integrity rule broken"), db.session() as s:
        s.execute(text("INSERT INTO audit_departments VALUES (99, 'x')"))


def test_naive_timestamps_are_refused_by_the_column_type(db: Database) -> None:
    row = NodeRow(node_id="n", department="d", cert_serial="1", fingerprint=FP,
                  enrolled_at=datetime(2026, 1, 1), connected=False)  # fmt: skip
    with pytest.raises(StoreError, match="timezone-aware"), db.session() as s:
        s.add(row)
        s.flush()


@pytest.mark.parametrize("url", ["", "   ", "not a url", "://nothing"])
def test_malformed_url_is_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match="URL"):
        Database(url)


def test_unknown_dialect_is_config_error() -> None:
    with pytest.raises(ConfigError, match="cannot be used"):
        Database("nosuchdb://user@localhost/x")


def test_missing_driver_is_config_error() -> None:
    with pytest.raises(ConfigError, match="driver"):
        Database("mysql+mysqldb://user:secret@127.0.0.1/clawfed")


def test_password_is_hidden_in_url() -> None:
    db = Database("sqlite:///relative.db")
    assert db.url == "sqlite:///relative.db"
    with pytest.raises(ConfigError) as info:
        Database("mysql+mysqldb://user:hunter2@127.0.0.1/clawfed")
    assert "hunter2" not in str(info.value)


def test_unreachable_database_is_store_error_naming_url(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "missing-dir" / "store.db")
    db = Database(url)
    with pytest.raises(StoreError, match="unreachable") as info:
        db.ping()
    assert "missing-dir" in str(info.value)
    with pytest.raises(StoreError, match="unreachable"):
        db.upgrade()
    db.close()


def test_busy_timeout_must_be_positive(db_path: Path) -> None:
    with pytest.raises(ConfigError, match="busy_timeout_s must be > 0"):
        Database(sqlite_url(db_path), busy_timeout_s=0)


def _schema(db: Database) -> dict[str, object]:
    insp = inspect(db.engine)
    out: dict[str, object] = {}
    for table in sorted(set(insp.get_table_names()) - {"alembic_version"}):
        out[table] = {
            "columns": [
                (c["name"], type(c["type"]).__name__, c["nullable"])
                for c in insp.get_columns(table)
            ],
            "pk": insp.get_pk_constraint(table)["constrained_columns"],
            "fks": sorted(
                (f["name"], tuple(f["constrained_columns"]), f["referred_table"])
                for f in insp.get_foreign_keys(table)
            ),
            "indexes": sorted(
                (i["name"], tuple(i["column_names"]), bool(i["unique"]))
                for i in insp.get_indexes(table)
            ),
            "uniques": sorted(
                (u["name"], tuple(u["column_names"])) for u in insp.get_unique_constraints(table)
            ),
        }
    return out


def test_alembic_upgrade_builds_the_same_schema_as_create_all(db: Database, tmp_path: Path) -> None:
    migrated = Database(sqlite_url(tmp_path / "migrated.db"))
    migrated.upgrade()
    try:
        expected = _schema(db)
        assert set(expected) == set(Base.metadata.tables)
        assert _schema(migrated) == expected
        with migrated.engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(ctx, Base.metadata) == []
    finally:
        migrated.close()


def test_upgrade_is_idempotent_and_records_the_revision(tmp_path: Path) -> None:
    db = Database(sqlite_url(tmp_path / "ws.db"))
    assert db.current_revision() is None
    db.upgrade()
    head = db.current_revision()
    heads = ScriptDirectory(str(MIGRATIONS_DIR)).get_heads()
    assert heads == [head]  # one linear chain of revisions, and the database is at its end
    NodeRegistry(db).enroll("n1", "credit", 5, FP)
    db.upgrade()
    assert db.current_revision() == head
    assert NodeRegistry(db).get("n1").cert_serial == 5
    db.close()


def test_upgrade_refuses_a_database_made_by_create_all(db: Database) -> None:
    with pytest.raises(StoreError, match="no Alembic revision"):
        db.upgrade()


def test_upgrade_to_unknown_revision_is_store_error(tmp_path: Path) -> None:
    db = Database(sqlite_url(tmp_path / "ws.db"))
    with pytest.raises(StoreError, match="nope"):
        db.upgrade("nope")
    db.close()


def test_in_memory_sqlite_works_across_sessions() -> None:
    with Database("sqlite://") as db:
        db.create_all()
        NodeRegistry(db).enroll("n1", "credit", 3, FP)
        assert [n.node_id for n in NodeRegistry(db).list()] == ["n1"]
