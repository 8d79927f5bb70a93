"""Hark's database layer: one schema on SQLite (embedded) or PostgreSQL (scaled).

Each domain keeps its tables, queries and rules together in its own package
(`models.py`, `repository.py`, `service.py`); services are stateless functions that
take the session as their first argument and never commit. Schema changes are
Alembic revisions under `hark/db/migrations/versions`.
"""

from __future__ import annotations

from hark.db.base import DEFAULT_TENANT_ID, Base
from hark.db.engine import display_url, make_engine, normalize_url
from hark.db.migrate import current_revision, downgrade, ensure_schema, head_revision, upgrade
from hark.db.session import Database, open_database

__all__ = [
    "DEFAULT_TENANT_ID",
    "Base",
    "Database",
    "current_revision",
    "display_url",
    "downgrade",
    "ensure_schema",
    "head_revision",
    "make_engine",
    "normalize_url",
    "open_database",
    "upgrade",
]
