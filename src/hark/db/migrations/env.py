"""Alembic's entry point, loaded by `alembic.command` functions.

`hark.db.migrate` hands over an open connection inside its own transaction; used
any other way (a bare `alembic_config(url)`), this opens one from the URL.
"""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import Connection
from sqlalchemy.pool import NullPool

from hark.db import models  # noqa: F401  (registers every table on the metadata)
from hark.db.base import Base
from hark.db.engine import make_engine
from hark.db.migrate import include_name

config = context.config

# SQLite supports transactional DDL once the driver stops managing transactions
# itself (see hark.db.engine); saying so makes a failed upgrade roll back there too.
# Batch operations recreate tables on SQLite and become plain ALTERs on PostgreSQL.
_OPTIONS: dict[str, Any] = {
    "target_metadata": Base.metadata,
    "compare_type": True,
    "render_as_batch": True,
    "transactional_ddl": True,
    "include_name": include_name,
}


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from hark.config import get_settings

    return get_settings().database


def _run(connection: Connection) -> None:
    context.configure(connection=connection, **_OPTIONS)
    with context.begin_transaction():
        context.run_migrations()


def run() -> None:
    if context.is_offline_mode():
        context.configure(url=_url(), literal_binds=True, **_OPTIONS)
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(_url(), poolclass=NullPool)
    try:
        with engine.connect() as own:
            _run(own)
    finally:
        engine.dispose()


run()
