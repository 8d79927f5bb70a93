"""Schema migrations, run from code: the Alembic scripts ship inside the package.

No `alembic.ini` is needed; `alembic_config` builds the configuration. Every
migration runs on one connection in one transaction, so a failed upgrade leaves the
schema as it was, and concurrent upgraders (several replicas starting at once, or
two `hark` commands) queue behind a lock instead of racing: PostgreSQL takes an
advisory transaction lock, SQLite its write lock.

A developer adds a revision, after changing models, with::

    from alembic import command
    from hark.db.migrate import alembic_config
    command.revision(alembic_config("sqlite:///dev.db"), "add jobs", autogenerate=True,
                     rev_id="0002")

against a database at head; review the generated file before committing it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Connection, text
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

from hark.db.engine import SQLITE_BEGIN_OPTION, display_url, make_engine, translate_errors
from hark.errors import DatabaseError, SchemaMismatchError

log = logging.getLogger("hark.db")

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

# Arbitrary, fixed: every Hark process agrees on it, nothing else is likely to use it.
_ADVISORY_LOCK_KEY = 0x4841524B

# Made by hand in migrations, on one database only, and not described by the models
# (the search index of revision 0003: SQLite's FTS5 table and its shadow tables,
# PostgreSQL's expression index): comparing the schema with the models skips them.
UNMODELLED_TABLE_PREFIX = "transcript_segments_fts"
UNMODELLED_INDEXES = frozenset({"ix_transcript_segments_search"})


def include_name(name: str | None, type_: str, _parent_names: object) -> bool:
    """Alembic's `include_name` hook: False for the objects above."""
    if type_ == "table" and name is not None:
        return not name.startswith(UNMODELLED_TABLE_PREFIX)
    if type_ == "index":
        return name not in UNMODELLED_INDEXES
    return True


def alembic_config(url: str | URL | None = None) -> Config:
    """Alembic's configuration for Hark's migrations, optionally bound to `url`."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    # Revision files must be importable module names (they are type-checked).
    config.set_main_option("file_template", "v%%(rev)s_%%(slug)s")
    if url is not None:
        rendered = url if isinstance(url, str) else url.render_as_string(hide_password=False)
        config.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    return config


def head_revision() -> str | None:
    """The newest revision this version of Hark ships."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(url: str | URL) -> str | None:
    """The revision the database is at; None for a database never migrated."""
    engine = make_engine(url, poolclass=NullPool)
    try:
        with translate_errors(url), engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def upgrade(url: str | URL, revision: str = "head") -> str | None:
    """Migrate the database up to `revision`; returns the revision it ends at."""
    return _migrate(url, lambda config: command.upgrade(config, revision))


def downgrade(url: str | URL, revision: str) -> str | None:
    """Migrate the database down to `revision` ("base" empties it of Hark's tables)."""
    return _migrate(url, lambda config: command.downgrade(config, revision))


def ensure_schema(url: str | URL) -> str | None:
    """Bring the database to head if it is behind; refuse one that is ahead of this code."""
    head = head_revision()
    current = current_revision(url)
    if current == head:
        return current
    if current is not None and not _known(current):
        raise SchemaMismatchError(
            f"the database {display_url(url)} is at schema revision {current}, which this "
            f"version of Hark does not know (newest: {head}); upgrade Hark",
            revision=current,
        )
    reached = upgrade(url)
    log.info("database %s migrated from schema %s to %s", display_url(url),
             current or "(empty)", reached)
    return reached


def _known(revision: str) -> bool:
    try:
        return ScriptDirectory.from_config(alembic_config()).get_revision(revision) is not None
    except CommandError:
        return False


def _migrate(url: str | URL, run: Callable[[Config], None]) -> str | None:
    engine = make_engine(url, poolclass=NullPool)
    try:
        with translate_errors(url), engine.connect() as connection:
            sqlite = connection.dialect.name == "sqlite"
            if sqlite:
                # Recreating a table (SQLite's way to alter one) drops the old copy,
                # which with foreign keys on would cascade into its children. The
                # pragma is ignored inside a transaction, so it goes first.
                _sqlite_pragma(connection, "foreign_keys=OFF")
            connection.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"})
            with connection.begin():
                if connection.dialect.name == "postgresql":
                    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                                       {"key": _ADVISORY_LOCK_KEY})
                config = alembic_config(url)
                config.attributes["connection"] = connection
                try:
                    run(config)
                except CommandError as exc:
                    raise DatabaseError(f"migration failed: {exc}") from exc
                if sqlite:
                    _check_foreign_keys(connection)
                return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def _sqlite_pragma(connection: Connection, pragma: str) -> None:
    # Straight to the driver: through SQLAlchemy the statement would open a transaction.
    driver = connection.connection.dbapi_connection
    assert driver is not None
    driver.execute(f"PRAGMA {pragma}")


def _check_foreign_keys(connection: Connection) -> None:
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        tables = sorted({str(row[0]) for row in broken})
        raise DatabaseError(
            f"migration left rows with dangling foreign keys in {', '.join(tables)}; "
            "nothing was changed", tables=tables,
        )
