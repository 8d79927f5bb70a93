"""Sessions: one unit of work each, committed by the edge that opened it.

Services only add, change and flush; the CLI command, HTTP request or background
task that owns the session decides whether the work is committed, by leaving the
`with` block normally, or discarded, by raising.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker

from hark.db import hooks  # noqa: F401  (registers the after-commit listeners)
from hark.db.engine import SQLITE_BEGIN_OPTION, make_engine, normalize_url, translate_errors


class Database:
    """An engine and its session factory. Make one per process (or app) and share it."""

    def __init__(self, url: str | URL, **engine_options: Any) -> None:
        self.url = normalize_url(url)
        self.engine: Engine = make_engine(self.url, **engine_options)
        # A file on this machine: reads are quick enough to run on an event loop.
        self.local = self.url.get_backend_name() == "sqlite"
        # Objects stay readable after commit: the edge often reports what it just wrote.
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # Write sessions make SQLite take its write lock when their transaction begins,
        # at their first statement, not when the session is made: an HTTP handler holds
        # one while it streams and probes an upload, and must not block writers then.
        self._writers = sessionmaker(
            self.engine.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"}),
            expire_on_commit=False)

    @contextmanager
    def session(self, *, write: bool = False) -> Iterator[Session]:
        """A session committed when the block ends normally and rolled back if it raises.

        `write=True` makes SQLite take its write lock when the transaction begins (at
        the first statement), so a read-then-write unit of work waits its turn instead
        of failing halfway when another writer got there first; PostgreSQL ignores it.
        Actions registered with `hark.db.hooks` run after the commit (or rollback).
        """
        with translate_errors(self.url):
            session = (self._writers if write else self._sessions)()
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise
            finally:
                session.close()

    def dispose(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Database:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.dispose()


def open_database(url: str | URL, *, migrate: bool = True, **engine_options: Any) -> Database:
    """A Database for `url`, its schema first brought up to date unless `migrate=False`."""
    if migrate:
        from hark.db.migrate import ensure_schema

        ensure_schema(url)
    return Database(url, **engine_options)
