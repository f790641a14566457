"""The store on PostgreSQL: migrations, several connections and processes, real failures.

The other governance tests run on both backends through ``conftest.py``; these cover what
they check on SQLite through the SQLite file itself. Tests taking ``postgres_url`` are
skipped unless ``CLAWFED_TEST_POSTGRES_URL`` is set; those taking ``db_url`` run on both.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from governance_support import StepClock, append_many
from sqlalchemy import Engine, event, inspect, text

from clawfed.core import Weights
from clawfed.core.errors import StoreError
from clawfed.governance import (
    ArtifactStore,
    AuditLog,
    Base,
    Database,
    JobStatus,
    JobStore,
    ModelRegistry,
    NodeRegistry,
    Participant,
    RoundOutcome,
    StrategyInfo,
)
from clawfed.governance.approvals import ApprovalBook
from clawfed.governance.db import MIGRATIONS_DIR
from clawfed.governance.policy import Role
from clawfed.governance.users import UserDirectory

T0 = datetime(2026, 4, 1, 8, 0, tzinfo=UTC)


@pytest.fixture
def pg(postgres_url: str) -> Iterator[Database]:
    database = Database(postgres_url)
    database.create_all()
    yield database
    database.close()


def _alembic() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def _head() -> str:
    head = ScriptDirectory.from_config(_alembic()).get_current_head()
    assert head is not None
    return head


def _columns(engine: Engine) -> dict[str, list[tuple[str, str, bool]]]:
    insp = inspect(engine)
    return {
        t: [(c["name"], str(c["type"]), bool(c["nullable"])) for c in insp.get_columns(t)]
        for t in sorted(set(insp.get_table_names()) - {"alembic_version"})
    }


def test_postgres_migrations_build_exactly_the_models(
    postgres_url: str, postgres_admin: Engine
) -> None:
    migrated = Database(postgres_url)
    migrated.upgrade()
    try:
        assert migrated.current_revision() == _head()
        with migrated.engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(ctx, Base.metadata) == []
        assert set(_columns(migrated.engine)) == set(Base.metadata.tables)
        # create_all in a second schema gives the same columns, types and nullability.
        with postgres_admin.begin() as conn:
            conn.execute(text('CREATE SCHEMA "models_only"'))
        other = Database(postgres_url.replace("search_path%3Dt_", "search_path%3Dmodels_only,t_"))
        try:
            other.create_all()
            assert _columns(other.engine) == _columns(migrated.engine)
        finally:
            other.close()
            with postgres_admin.begin() as conn:
                conn.execute(text('DROP SCHEMA "models_only" CASCADE'))
    finally:
        migrated.close()


def test_migrations_go_down_to_nothing_and_up_again(db_url: str) -> None:
    db = Database(db_url)
    try:
        db.upgrade()
        UserDirectory(db).create("ada", Role.DATA_ADMIN)
        with db.engine.begin() as conn:
            cfg = _alembic()
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "base")
        assert set(inspect(db.engine).get_table_names()) <= {"alembic_version"}
        assert db.current_revision() is None
        db.upgrade()
        assert db.current_revision() == _head()
        assert UserDirectory(db).list() == []
    finally:
        db.close()


def test_audit_appends_from_several_processes_form_one_chain(
    pg: Database, postgres_url: str
) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=append_many, args=(postgres_url, f"p{k}", 30)) for k in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        if p.is_alive():  # pragma: no cover - only on a hang
            p.kill()
            p.join()
    assert [p.exitcode for p in procs] == [0, 0, 0]
    result = AuditLog(pg).verify()
    assert result.ok and result.checked == 90
    assert {r.actor for r in AuditLog(pg).list(limit=200)} == {"p0", "p1", "p2"}


def test_audit_appends_from_threads_on_two_engines(pg: Database, postgres_url: str) -> None:
    other = Database(postgres_url)
    logs = [AuditLog(pg), AuditLog(other)]
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            for i in range(10):
                logs[k % 2].append(f"t{k}", "node", "beat", "fed", ["credit"], {"i": i}, "ok")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    other.close()
    assert not errors and not any(t.is_alive() for t in threads)
    result = AuditLog(pg).verify()
    assert result.ok and result.checked == 40


def test_an_audit_writer_that_loses_the_race_retries(pg: Database, postgres_url: str) -> None:
    other = Database(postgres_url)
    rival = AuditLog(other)
    raced: list[int] = []

    def interfere(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.startswith("INSERT INTO audit_log") and not raced:
            raced.append(rival._append_once("rival", "node", "beat", "fed", (), {}, "ok").seq)

    event.listen(pg.engine, "before_cursor_execute", interfere)
    try:
        mine = AuditLog(pg).append("me", "data_admin", "job.submit", "job:1", [], {}, "ok")
    finally:
        event.remove(pg.engine, "before_cursor_execute", interfere)
        other.close()
    assert raced == [1]
    assert mine.seq == 2 and mine.prev_hash == AuditLog(pg).list()[0].hash
    assert AuditLog(pg).verify().ok


@pytest.mark.parametrize("table", ["model_versions", "rounds"])
def test_a_database_failure_mid_round_leaves_nothing_behind(
    pg: Database, tmp_path: Path, table: str
) -> None:
    jobs = JobStore(pg, clock=StepClock())
    jobs.create("j1", "credit-risk", "", 3)
    jobs.set_status("j1", JobStatus.RUNNING)
    before = jobs.get("j1")
    with pg.engine.begin() as conn:
        conn.execute(text(
            "CREATE FUNCTION disk_full() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'disk full (simulated)'; END $$"
        ))  # fmt: skip
        conn.execute(text(f"CREATE TRIGGER fail_{table} BEFORE INSERT ON {table} "
                          "FOR EACH ROW EXECUTE FUNCTION disk_full()"))  # fmt: skip
    artifact = ArtifactStore(tmp_path).save(Weights({"w": np.ones(3, np.float32)}), "v1", {})
    outcome = RoundOutcome(
        round_no=1, started_at=T0, finished_at=T0 + timedelta(seconds=5),
        participants=[Participant("c1", "credit", 10)],
    )  # fmt: skip
    fedavg = StrategyInfo("fedavg")
    with pytest.raises(StoreError, match="disk full"):
        jobs.complete_round("j1", outcome, artifact=artifact, strategy=fedavg, new_state={"s": 9})
    assert jobs.get("j1") == before and jobs.rounds("j1") == []
    assert ModelRegistry(pg).list() == []
    with pg.engine.begin() as conn:
        conn.execute(text(f"DROP TRIGGER fail_{table} ON {table}"))
    done = jobs.complete_round("j1", outcome, artifact=artifact, strategy=fedavg, new_state={})
    assert done.version.number == 1 and jobs.get("j1").rounds_done == 1


def test_a_version_with_default_strategy_settings_is_stored(db: Database, tmp_path: Path) -> None:
    jobs = JobStore(db, clock=StepClock())
    jobs.create("j1", "credit-risk", "", 1)
    jobs.set_status("j1", JobStatus.RUNNING)
    artifact = ArtifactStore(tmp_path).save(Weights({"w": np.ones(2, np.float32)}), "v1", {})
    outcome = RoundOutcome(
        round_no=1, started_at=T0, finished_at=T0 + timedelta(seconds=1),
        participants=[Participant("c1", "credit", 10)],
    )  # fmt: skip
    done = jobs.complete_round(
        "j1", outcome, artifact=artifact, strategy=StrategyInfo("fedavg"), new_state={}
    )
    assert ModelRegistry(db).get(done.version.version_id).strategy == StrategyInfo("fedavg")


def test_a_new_database_object_sees_everything(postgres_url: str) -> None:
    clock = StepClock()
    with Database(postgres_url) as first:
        first.upgrade()
        NodeRegistry(first, clock=clock).enroll("c1", "信贷部", 2**159 - 1, "ab" * 32)
        JobStore(first, clock=clock).create("fraud", "fraud", "rounds: 1\n", 1)
        people = UserDirectory(first, clock=clock)
        people.create("hugo", Role.DEPARTMENT_HEAD, department="信贷部", display_name="胡" * 128)
        token = people.issue_token("hugo", label="x").token
        people.link_wecom("hugo", "HuGo")
        ApprovalBook(first, AuditLog(first), clock=clock).request("fraud", "信贷部", "反欺诈")
    with Database(postgres_url) as second:
        assert NodeRegistry(second).get("c1").cert_serial == 2**159 - 1
        people = UserDirectory(second, clock=clock)
        hugo = people.authenticate(token)
        assert hugo.department == "信贷部" and hugo.display_name == "胡" * 128
        assert people.user_by_wecom("hugo") == hugo
        book = ApprovalBook(second, AuditLog(second), clock=clock)
        book.approve(hugo, "fraud", "信贷部", "反欺诈")
        assert book.participating_departments("fraud") == {"信贷部"}
        assert AuditLog(second).verify().ok
