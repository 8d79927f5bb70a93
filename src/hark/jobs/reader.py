"""Job rows for status polls on SQLite, read straight from one DBAPI connection.

`GET /api/v1/jobs/{id}` is what clients poll, and on SQLite it runs on the event loop
(WAL readers never wait for writers, so a thread hop would only add cost). Through
SQLAlchemy, the pool checkout, connection events, rollback on release and result
handling cost several times the query itself; here one connection of the engine's
pool is kept for the loop, and the row goes through the same column types
(`dialect_impl(...).result_processor`), so values come out as the ORM gives them.
The connection is in autocommit mode (see hark.db.engine): each SELECT sees the
latest commit, and no read transaction pins an old snapshot.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.pool import PoolProxiedConnection

from hark.errors import DatabaseError
from hark.jobs.models import Job


class JobRowReader:
    """Reads one job row at a time; for the one thread (the event loop) that owns it."""

    def __init__(self, engine: Engine) -> None:
        dialect = engine.dialect
        table = Job.metadata.tables[Job.__tablename__]
        quote = dialect.identifier_preparer.quote
        self._engine = engine
        self._names = [column.name for column in table.columns]
        self._processors: list[Callable[[Any], Any] | None] = [
            column.type.dialect_impl(dialect).result_processor(dialect, None)
            for column in table.columns]
        self._sql = (f"SELECT {', '.join(quote(name) for name in self._names)} "
                     f"FROM {quote(table.name)} WHERE {quote('id')} = ?")
        self._connection: PoolProxiedConnection | None = None

    def read(self, job_id: str) -> SimpleNamespace | None:
        """The job's columns as attributes, or None if there is no such job."""
        try:
            if self._connection is None:
                self._connection = self._engine.raw_connection()
            cursor = self._connection.cursor()
            try:
                cursor.execute(self._sql, (job_id,))
                row = cursor.fetchone()
            finally:
                cursor.close()
        except sqlite3.Error as exc:
            self.close(invalidate=True)
            raise DatabaseError(f"cannot read job {job_id}: {exc}") from exc
        if row is None:
            return None
        return SimpleNamespace(**{
            name: value if process is None else process(value)
            for name, process, value in zip(self._names, self._processors, row, strict=True)})

    def close(self, *, invalidate: bool = False) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if invalidate:
            connection.invalidate()  # a broken connection must not go back to the pool
        else:
            connection.close()
