"""The SQL database behind the coordinator: engine, sessions, schema creation and migration."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from sqlalchemy import DateTime, Dialect, Engine, MetaData, create_engine, event, inspect
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import StaticPool
from sqlalchemy.types import TypeDecorator

from clawfed.core.errors import ClawfedError, ConfigError, StoreError

MIGRATIONS_DIR = Path(__file__).with_name("migrations")

_NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A ``DateTime(timezone=True)`` that only accepts aware datetimes and returns them in UTC.

    SQLite keeps no offset, so values are stored as UTC there and marked UTC on the way back.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise StoreError(f"timestamps must be timezone-aware, got naive {value.isoformat()}")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:  # noqa: ARG002
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base of every governance table; constraint names follow one convention."""

    metadata = MetaData(naming_convention=_NAMING)
    type_annotation_map = {datetime: UTCDateTime()}


def sqlite_url(path: Path) -> str:
    """The SQLAlchemy URL of the SQLite file at ``path``."""
    return f"sqlite:///{Path(path).resolve()}"


def translate_error(exc: sa_exc.SQLAlchemyError, url: str) -> ClawfedError:
    """Map an SQLAlchemy error to the most specific clawfed error, naming the database."""
    if isinstance(exc, sa_exc.StatementError) and isinstance(exc.orig, ClawfedError):
        return exc.orig
    orig = getattr(exc, "orig", None) or exc
    if isinstance(exc, sa_exc.IntegrityError):
        return StoreError(f"database {url} refused the change (integrity rule broken): {orig}")
    if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError):
        return StoreError(
            f"database {url} is unreachable or unusable: {orig}; check the URL, that the server "
            "is running and that the file or directory exists and is writable"
        )
    if isinstance(exc, sa_exc.ArgumentError | sa_exc.NoSuchModuleError):
        return ConfigError(f"database URL {url} is invalid: {exc}")
    return StoreError(f"database {url} failed: {orig}")


class Database:
    """An engine and session factory for one SQLAlchemy URL (SQLite file by default).

    Parameters
    ----------
    url:
        Any SQLAlchemy URL, e.g. ``sqlite:////srv/clawfed/store.db`` or
        ``postgresql+psycopg://user:pw@host/clawfed``.
    busy_timeout_s:
        How long SQLite waits for a lock held by another connection before failing.
    """

    def __init__(self, url: str, *, busy_timeout_s: float = 30.0) -> None:
        if not isinstance(url, str) or not url.strip():
            raise ConfigError(f"database URL must be a non-empty string, got {url!r}")
        if busy_timeout_s <= 0:
            raise ConfigError(f"busy_timeout_s must be > 0 s, got {busy_timeout_s}")
        try:
            parsed: URL = make_url(url)
        except sa_exc.ArgumentError as exc:
            raise ConfigError(f"database URL {url!r} is not a valid SQLAlchemy URL: {exc}") from exc
        self._url = parsed.render_as_string(hide_password=True)
        kwargs: dict[str, Any] = {}
        is_sqlite = parsed.get_backend_name() == "sqlite"
        if is_sqlite:
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": busy_timeout_s}
            if parsed.database in (None, "", ":memory:"):
                kwargs["poolclass"] = StaticPool
        else:
            kwargs["pool_pre_ping"] = True
        try:
            self._engine = create_engine(parsed, **kwargs)
        except (sa_exc.ArgumentError, sa_exc.NoSuchModuleError) as exc:
            raise ConfigError(f"database URL {self._url} cannot be used: {exc}") from exc
        except ImportError as exc:
            raise ConfigError(
                f"database URL {self._url} needs a driver that is not installed: {exc}"
            ) from exc
        if is_sqlite:
            event.listen(self._engine, "connect", _sqlite_pragmas(int(busy_timeout_s * 1000)))
        self._sessions = sessionmaker(self._engine, expire_on_commit=False)

    @property
    def url(self) -> str:
        """The database URL with any password hidden."""
        return self._url

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (for migrations and tests)."""
        return self._engine

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits when the block ends and rolls back if it raises.

        SQLAlchemy errors leave the block as ``StoreError`` (or ``ConfigError``).
        """
        s = self._sessions()
        try:
            yield s
            s.commit()
        except sa_exc.SQLAlchemyError as exc:
            s.rollback()
            raise translate_error(exc, self._url) from exc
        except BaseException:
            s.rollback()
            raise
        finally:
            s.close()

    def ping(self) -> None:
        """Open a connection and run a trivial query; raise ``StoreError`` if that fails."""
        with self.session() as s:
            s.connection().exec_driver_sql("SELECT 1")

    def create_all(self) -> None:
        """Create every table straight from the models (tests only; workspaces use upgrade)."""
        from clawfed.governance import tables  # noqa: F401  (registers the models)

        try:
            Base.metadata.create_all(self._engine)
        except sa_exc.SQLAlchemyError as exc:
            raise translate_error(exc, self._url) from exc

    def upgrade(self, revision: str = "head") -> None:
        """Bring the schema to ``revision`` with Alembic (``alembic upgrade head``)."""
        from alembic import command
        from alembic.config import Config
        from alembic.util.exc import CommandError

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
        try:
            with self._engine.begin() as conn:
                names = set(inspect(conn).get_table_names())
                if names and "alembic_version" not in names:
                    raise StoreError(
                        f"database {self._url} holds tables ({', '.join(sorted(names))}) but no "
                        "Alembic revision; it was not made by Database.upgrade, so it cannot be "
                        "migrated (start from an empty database)"
                    )
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, revision)
        except sa_exc.SQLAlchemyError as exc:
            raise translate_error(exc, self._url) from exc
        except CommandError as exc:
            raise StoreError(
                f"migrating database {self._url} to {revision!r} failed: {exc}"
            ) from exc

    def current_revision(self) -> str | None:
        """The Alembic revision the database is at, or ``None`` if it was never migrated."""
        from alembic.runtime.migration import MigrationContext

        try:
            with self._engine.connect() as conn:
                return MigrationContext.configure(conn).get_current_revision()
        except sa_exc.SQLAlchemyError as exc:
            raise translate_error(exc, self._url) from exc

    def close(self) -> None:
        """Close every pooled connection."""
        self._engine.dispose()

    def __enter__(self) -> Database:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Database({self._url!r})"


def _sqlite_pragmas(busy_ms: int) -> Any:
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={busy_ms}")
        finally:
            cur.close()

    return on_connect
