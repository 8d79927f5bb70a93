"""The one way a job's status is read for the API: `JobReader.read`, the job's row as
`JobOut`, for the caller's tenant only.

On PostgreSQL the row is read on a short connection in a worker thread. On SQLite it is
read straight from one DBAPI connection, on the event loop:

`GET /api/v1/jobs/{id}` is what clients poll, and on SQLite it runs on the event loop
(WAL readers never wait for writers, so a thread hop would only add cost). Through
SQLAlchemy, the pool checkout, connection events, rollback on release and result
handling cost several times the query itself; here one connection of the engine's
pool is kept for the loop, and the row goes through the same column types
(`dialect_impl(...).result_processor`), so values come out as the ORM gives them.
The connection is in autocommit mode (see hark.db.engine): each SELECT sees the
latest commit, and no read transaction pins an old snapshot. (Measured with
`python -m benchmarks.service --only status`: about twice the requests per second of
the threaded read; see docs/benchmarks.md.)
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from anyio.to_thread import run_sync
from sqlalchemy import Engine, bindparam, select
from sqlalchemy.pool import PoolProxiedConnection

from hark.db import Database
from hark.db.engine import translate_errors
from hark.errors import DatabaseError, JobNotFoundError
from hark.jobs.models import Job
from hark.jobs.schemas import JobOut

# Built once: status polls are the hottest read, and building the statement per call
# costs about as much as running it.
_READ_JOB = select(Job.__table__).where(Job.__table__.c.id == bindparam("job_id"))


class JobReader:
    """Status reads for one app; close it when the app stops."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._rows = JobRowReader(db.engine) if db.local else None

    async def read(self, tenant_id: str, job_id: str) -> JobOut:
        """The job as the API shows it; another tenant's job is as good as absent."""
        if self._rows is not None:
            values = self._rows.read(job_id)
        else:
            values = await run_sync(self._read_row, job_id)
        if values is None or values.get("tenant_id") != tenant_id:
            raise JobNotFoundError(f"no job with id {job_id}", job_id=job_id)
        # A transient Job (never added to a session): the ORM's type, not a look-alike.
        return JobOut.of(Job(**values))

    def _read_row(self, job_id: str) -> dict[str, Any] | None:
        # translate_errors: an unreachable database is a 503 DATABASE_ERROR, as in sessions.
        with translate_errors(self._db.url), self._db.engine.connect() as connection:
            row = connection.execute(_READ_JOB, {"job_id": job_id}).first()
        return dict(row._mapping) if row is not None else None

    def close(self) -> None:
        if self._rows is not None:
            self._rows.close()


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

    def read(self, job_id: str) -> dict[str, Any] | None:
        """The job's columns by name, or None if there is no such job."""
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
        return {name: value if process is None else process(value)
                for name, process, value in zip(self._names, self._processors, row, strict=True)}

    def close(self, *, invalidate: bool = False) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if invalidate:
            connection.invalidate()  # a broken connection must not go back to the pool
        else:
            connection.close()
