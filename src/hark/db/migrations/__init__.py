"""Alembic's environment and revisions for Hark's database (see `hark.db.migrate`)."""
