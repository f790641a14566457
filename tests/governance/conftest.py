"""Fixtures for the governance store tests: real SQLite files in tmp_path and a fake clock."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from governance_support import StepClock

from clawfed.governance import Database, sqlite_url


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "store.db"


@pytest.fixture
def db(db_path: Path) -> Iterator[Database]:
    database = Database(sqlite_url(db_path))
    database.create_all()
    yield database
    database.close()


@pytest.fixture
def clock() -> StepClock:
    return StepClock()
