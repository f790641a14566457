"""Fixtures for the governance store tests: a real database on SQLite and on PostgreSQL.

Every test that takes ``db`` (or ``db_url``) runs twice: on a SQLite file in ``tmp_path``
and on PostgreSQL when ``CLAWFED_TEST_POSTGRES_URL`` names a server (``scripts/postgres.sh
start`` prints one); without it the PostgreSQL variant is skipped. There ``db`` is a schema
shared by the session and emptied after each test, ``db_url`` and ``postgres_url`` a new
empty schema. Tests that open the SQLite file itself (``db_path``) run on SQLite only.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from governance_support import StepClock
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from clawfed.governance import Base, Database, sqlite_url

POSTGRES_ENV = "CLAWFED_TEST_POSTGRES_URL"

#: Tests that check SQLite itself, by name, with why they do not apply to PostgreSQL.
SQLITE_ONLY = {
    "test_sqlite_connections_use_wal_foreign_keys_and_busy_timeout": "checks SQLite pragmas",
    "test_alembic_upgrade_builds_the_same_schema_as_create_all": (
        "compares with a migrated SQLite file (test_governance_postgres checks PostgreSQL)"
    ),
    "test_a_failure_mid_completion_leaves_nothing_behind": (
        "simulates a failure with a SQLite trigger (test_governance_postgres has a PL/pgSQL one)"
    ),
}


@pytest.fixture(scope="session")
def postgres_admin() -> Iterator[Engine]:
    """An engine on the server named by ``CLAWFED_TEST_POSTGRES_URL``; skips without it."""
    url = os.environ.get(POSTGRES_ENV, "").strip()
    if not url:
        pytest.skip(
            f"PostgreSQL variant skipped: set {POSTGRES_ENV} to a postgresql+psycopg:// URL "
            "(scripts/postgres.sh start prints one)"
        )
    engine = create_engine(url, poolclass=NullPool)
    yield engine
    engine.dispose()


def _new_schema(admin: Engine) -> str:
    schema = f"t_{uuid.uuid4().hex[:16]}"
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(admin.url).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)


def _schema_of(url: str) -> str:
    options = str(make_url(url).query["options"])
    return options.removeprefix("-csearch_path=")


def _drop_schema(admin: Engine, url: str) -> None:
    with admin.begin() as conn:
        conn.execute(text("SET LOCAL lock_timeout = '10s'"))
        conn.execute(text(f'DROP SCHEMA "{_schema_of(url)}" CASCADE'))


@pytest.fixture
def postgres_url(postgres_admin: Engine) -> Iterator[str]:
    """The URL of a fresh, empty schema on the test server (dropped afterwards)."""
    url = _new_schema(postgres_admin)
    yield url
    _drop_schema(postgres_admin, url)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    """Which database the test runs on."""
    name: str = request.param
    if name == "postgres":
        reason = SQLITE_ONLY.get(getattr(request.function, "__name__", ""))
        if reason is not None:
            pytest.skip(f"SQLite only: {reason}")
    return name


@pytest.fixture
def db_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """The URL of an empty database: a SQLite file in ``tmp_path`` or a PostgreSQL schema."""
    if backend == "postgres":
        url: str = request.getfixturevalue("postgres_url")
        return url
    return sqlite_url(tmp_path / "store.db")


@pytest.fixture
def db_path(backend: str, tmp_path: Path) -> Path:
    """The SQLite file behind ``db``; tests that open it directly run on SQLite only."""
    if backend != "sqlite":
        pytest.skip("SQLite only: the test opens the SQLite file behind the store directly")
    return tmp_path / "store.db"


def _empty(admin: Engine, schema: str) -> None:
    """Delete every row in ``schema`` and restart its sequences, in one round trip.

    (On small tables ``DELETE`` is many times faster than ``TRUNCATE``.)
    """
    script = [f'SET LOCAL search_path = "{schema}"', "SET LOCAL lock_timeout = '10s'"]
    script += [f'DELETE FROM "{t.name}"' for t in reversed(Base.metadata.sorted_tables)]
    with admin.begin() as conn:
        sequences = conn.execute(
            text("SELECT sequencename FROM pg_sequences WHERE schemaname = :s"), {"s": schema}
        ).scalars()
        script += [f'ALTER SEQUENCE "{q}" RESTART' for q in sequences]
        conn.exec_driver_sql("; ".join(script))


@pytest.fixture(scope="session")
def postgres_store(postgres_admin: Engine) -> Iterator[str]:
    """The URL of one schema holding every table, shared by the tests' ``db`` on PostgreSQL."""
    url = _new_schema(postgres_admin)
    with Database(url) as database:
        database.create_all()
    yield url
    _drop_schema(postgres_admin, url)


@pytest.fixture
def db(backend: str, request: pytest.FixtureRequest) -> Iterator[Database]:
    """A database with every table, empty: a SQLite file, or the shared PostgreSQL schema.

    On PostgreSQL the tables are made once per session and emptied after each test, which
    is much faster than making them for every test.
    """
    if backend == "postgres":
        url: str = request.getfixturevalue("postgres_store")
        database = Database(url)
        yield database
        database.close()
        _empty(request.getfixturevalue("postgres_admin"), _schema_of(url))
        return
    database = Database(request.getfixturevalue("db_url"))
    database.create_all()
    yield database
    database.close()


@pytest.fixture
def clock() -> StepClock:
    return StepClock()
