"""Tables: a job's transcript state, its revisions, and the search index of its segments.

The job's stored result object is the original (revision 0) and is never changed.
Each saved edit is a `TranscriptRevision` holding the complete set of differences
from that original (segments that differ, speakers renamed), so any revision is the
original plus one revision's edits, never a chain of deltas.

`TranscriptState` (one row per job) holds the latest revision number. It exists once
the transcript is indexed for search: its presence is what "indexed" means, so a
missing row (a job completed before this table existed, or one nobody searched for
yet) is indexed lazily by the first search. `TranscriptSegment` rows are the index:
one per segment of the latest revision. On SQLite an FTS5 table
(`transcript_segments_fts`, created by migration 0003 with its triggers) indexes
their text; on PostgreSQL a GIN index on `to_tsvector('simple', text)` does.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from hark.db.base import Base, IdMixin, TenantMixin, TimestampMixin

# Names the schema comparison must leave alone: created by hand in migration 0003,
# only on one database each, and invisible to the models.
SEARCH_FTS_TABLE = "transcript_segments_fts"
SEARCH_PG_INDEX = "ix_transcript_segments_search"


class TranscriptState(TenantMixin, TimestampMixin, Base):
    __tablename__ = "transcript_states"

    job_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    revision: Mapped[int] = mapped_column(Integer, default=0)


class TranscriptRevision(IdMixin, TenantMixin, TimestampMixin, Base):
    __tablename__ = "transcript_revisions"
    __table_args__ = (UniqueConstraint("job_id", "revision"),)

    job_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    revision: Mapped[int] = mapped_column(Integer)
    # edit | restore | enroll: what made this revision, for the history list.
    kind: Mapped[str] = mapped_column(String(16))
    api_key_id: Mapped[str | None] = mapped_column(String(36))
    # {"segments": {"<id>": <segment dict>}, "speakers": {"<id>": {"name", "profile_id"}}}
    edits: Mapped[dict[str, Any]] = mapped_column(JSON)


class TranscriptSegment(TenantMixin, Base):
    """One segment of a transcript's latest revision, as the search index holds it."""

    __tablename__ = "transcript_segments"

    # An integer key: SQLite's FTS5 table refers to these rows by rowid.
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"),
                                    primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    segment_id: Mapped[int] = mapped_column(Integer)
    start: Mapped[float] = mapped_column(Float)
    end: Mapped[float] = mapped_column(Float)
    speaker: Mapped[str | None] = mapped_column(String(200))
    text: Mapped[str] = mapped_column(Text)
