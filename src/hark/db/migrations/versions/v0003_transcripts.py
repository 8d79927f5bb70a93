"""Transcript revisions, their per-job state, and the full-text search index.

Besides the tables, each database gets its own text index, which the models do not
describe (the schema comparison skips them by name, see hark.db.migrate):

* SQLite: `transcript_segments_fts`, an FTS5 table over `transcript_segments.text`
  (external content: it stores only the index), kept in step by three triggers. A
  later migration that rebuilds `transcript_segments` in batch mode must recreate
  the triggers.
* PostgreSQL: a GIN index on `to_tsvector('simple', text)`, which the search query
  repeats word for word.

Revision ID: 0003
Revises: 0002
Created: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None

_SQLITE_FTS = (
    "CREATE VIRTUAL TABLE transcript_segments_fts USING fts5(text, "
    "content='transcript_segments', content_rowid='id', "
    "tokenize='unicode61 remove_diacritics 2')",
    "CREATE TRIGGER transcript_segments_fts_insert AFTER INSERT ON transcript_segments "
    "BEGIN INSERT INTO transcript_segments_fts(rowid, text) VALUES (new.id, new.text); END",
    "CREATE TRIGGER transcript_segments_fts_delete AFTER DELETE ON transcript_segments "
    "BEGIN INSERT INTO transcript_segments_fts(transcript_segments_fts, rowid, text) "
    "VALUES ('delete', old.id, old.text); END",
    "CREATE TRIGGER transcript_segments_fts_update AFTER UPDATE ON transcript_segments "
    "BEGIN INSERT INTO transcript_segments_fts(transcript_segments_fts, rowid, text) "
    "VALUES ('delete', old.id, old.text); "
    "INSERT INTO transcript_segments_fts(rowid, text) VALUES (new.id, new.text); END",
)
_POSTGRES_INDEX = ("CREATE INDEX ix_transcript_segments_search ON transcript_segments "
                   "USING gin (to_tsvector('simple', text))")


def _timestamps() -> list[sa.Column]:
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
    ]


def _job_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f(f"fk_{table}_job_id_jobs"),
                                   ondelete="CASCADE")


def upgrade() -> None:
    op.create_table(
        "transcript_states",
        sa.Column("job_id", sa.String(36), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.String(64), server_default="local", nullable=False),
        *_timestamps(),
        _job_fk("transcript_states"),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_transcript_states")),
    )
    op.create_table(
        "transcript_revisions",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("tenant_id", sa.String(64), server_default="local", nullable=False),
        *_timestamps(),
        sa.Column("job_id", sa.String(36), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("api_key_id", sa.String(36), nullable=True),
        sa.Column("edits", sa.JSON(), nullable=False),
        _job_fk("transcript_revisions"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transcript_revisions")),
        sa.UniqueConstraint("job_id", "revision",
                            name=op.f("uq_transcript_revisions_job_id_revision")),
    )
    op.create_index(op.f("ix_transcript_revisions_job_id"), "transcript_revisions", ["job_id"])
    op.create_table(
        "transcript_segments",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(64), server_default="local", nullable=False),
        sa.Column("job_id", sa.String(36), nullable=False),
        sa.Column("segment_id", sa.Integer(), nullable=False),
        sa.Column("start", sa.Float(), nullable=False),
        sa.Column("end", sa.Float(), nullable=False),
        sa.Column("speaker", sa.String(200), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        _job_fk("transcript_segments"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transcript_segments")),
    )
    op.create_index(op.f("ix_transcript_segments_job_id"), "transcript_segments", ["job_id"])
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for statement in _SQLITE_FTS:
            op.execute(statement)
    elif dialect == "postgresql":
        op.execute(_POSTGRES_INDEX)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for trigger in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER IF EXISTS transcript_segments_fts_{trigger}")
        op.execute("DROP TABLE IF EXISTS transcript_segments_fts")
    elif dialect == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_transcript_segments_search")
    op.drop_index(op.f("ix_transcript_segments_job_id"), table_name="transcript_segments")
    op.drop_table("transcript_segments")
    op.drop_index(op.f("ix_transcript_revisions_job_id"), table_name="transcript_revisions")
    op.drop_table("transcript_revisions")
    op.drop_table("transcript_states")
