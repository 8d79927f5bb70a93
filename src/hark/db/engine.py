"""Engines for the two supported databases: a SQLite file (embedded) and PostgreSQL.

SQLite gets what a multi-threaded server with background workers needs: foreign keys
enforced, write-ahead logging so readers never block the writer, a generous lock
timeout, and real transactions. The stock Python driver opens transactions lazily
and never for DDL, which breaks savepoints and migrations; here the driver is put
in autocommit mode and SQLAlchemy's own `begin` emits BEGIN, so a transaction means
what it says. A connection whose execution options carry `sqlite_begin="IMMEDIATE"`
takes the write lock when its transaction begins, which avoids lock-upgrade failures
in read-then-write transactions under concurrency.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, InterfaceError, OperationalError

from hark.errors import DatabaseError, MissingDependencyError

SQLITE_TIMEOUT_SECONDS = 30.0
POSTGRES_CONNECT_TIMEOUT_SECONDS = 10
SQLITE_BEGIN_OPTION = "sqlite_begin"

_POSTGRES_SCHEMES = {"postgres", "postgresql"}


def normalize_url(url: str | URL) -> URL:
    """The URL with PostgreSQL pointed at psycopg 3, whichever spelling it came in.

    `postgres://` (what many hosting providers hand out) and the driverless
    `postgresql://` both mean psycopg 3; an explicit driver is left alone.
    """
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except ArgumentError as exc:
        raise DatabaseError(f"not a database URL: {url!s}", field="database_url") from exc
    if parsed.drivername in _POSTGRES_SCHEMES:
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def display_url(url: str | URL) -> str:
    """The URL as it may be shown to a person: the password masked."""
    return normalize_url(url).render_as_string(hide_password=True)


def sqlite_file(url: URL) -> Path | None:
    """The file behind a SQLite URL, or None for in-memory and URI-style databases."""
    database = url.database
    if url.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    if database.startswith("file:") or url.query.get("mode") == "memory":
        return None
    return Path(database).expanduser()


def make_engine(url: str | URL, **options: Any) -> Engine:
    """An engine for `url`; keyword options go to SQLAlchemy's `create_engine`."""
    parsed = normalize_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        path = sqlite_file(parsed)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        connect_args = {"timeout": SQLITE_TIMEOUT_SECONDS, "check_same_thread": False}
        connect_args.update(options.pop("connect_args", {}))
        if path is not None and "poolclass" not in options:
            # Every connection runs the PRAGMAs below when opened: keep enough of them
            # pooled that a busy server does not keep opening new ones.
            options.setdefault("pool_size", 20)
            options.setdefault("max_overflow", 40)
        engine = _create(parsed, connect_args=connect_args, **options)
        _configure_sqlite(engine, wal=path is not None)
        return engine
    if backend == "postgresql":
        # libpq waits for ever on an unanswering host; a command should fail instead.
        connect_args = {"connect_timeout": POSTGRES_CONNECT_TIMEOUT_SECONDS}
        connect_args.update(options.pop("connect_args", {}))
        options.setdefault("pool_pre_ping", True)
        options.setdefault("pool_recycle", 1800)
        return _create(parsed, connect_args=connect_args, **options)
    raise DatabaseError(
        f"unsupported database {backend!r}; use sqlite:/// or postgresql://",
        field="database_url",
    )


def _create(url: URL, **options: Any) -> Engine:
    try:
        return sa_create_engine(url, **options)
    except ImportError as exc:
        if url.get_backend_name() == "postgresql":
            raise MissingDependencyError("psycopg", extra="postgres") from exc
        raise


def _configure_sqlite(engine: Engine, *, wal: bool) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA foreign_keys=ON")
            if wal:
                cursor.execute("PRAGMA journal_mode=WAL")
                # Safe with WAL: a power loss can lose the last commits, never corrupt.
                cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection: Connection) -> None:
        mode = connection.get_execution_options().get(SQLITE_BEGIN_OPTION)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if mode == "IMMEDIATE" else "BEGIN")


@contextmanager
def translate_errors(url: str | URL) -> Iterator[None]:
    """Turn "cannot reach or lock the database" into a DatabaseError naming it.

    Integrity and programming errors pass through: they are bugs or conflicts for
    the caller to handle, not an unavailable database.
    """
    try:
        yield
    except (OperationalError, InterfaceError) as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise DatabaseError(f"cannot use the database {display_url(url)}: {reason}",
                            database=display_url(url)) from exc
