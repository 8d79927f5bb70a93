"""Full-text search over a tenant's transcripts, one row per segment of the latest revision.

SQLite (embedded mode) searches an FTS5 table kept in step with `transcript_segments`
by triggers; PostgreSQL (scaled mode) a GIN index on `to_tsvector('simple', text)`.
Both use no stemming and no stop words (the 'simple' configuration, FTS5's unicode61
tokenizer), because transcripts come in any language: a word matches itself, case
aside, and the last word of a query also matches as a prefix ("americ" finds
"Americans"), which suits a search box. Every word of the query must occur.

When the index is written: when a revision is saved (the service reindexes the job in
the same transaction), and lazily for completed jobs not indexed yet: each search
first indexes the tenant's completed jobs that have no `transcript_states` row (jobs
finished since the last search, or before this feature existed). So the worker needs
no hook, and a failure to index never fails a job.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, exists, insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hark.db import Database
from hark.errors import HarkError, OptionError, StorageError
from hark.jobs.models import COMPLETED, Job
from hark.pipeline.transcript import Transcript
from hark.storage.base import Storage
from hark.transcripts.models import TranscriptSegment, TranscriptState

MAX_QUERY_WORDS = 16
MAX_LIMIT = 100
# Jobs indexed per transaction while catching up, so one search never holds the write
# lock for long.
CATCH_UP_BATCH = 20
_START, _STOP = "\x02", "\x03"
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class Hit:
    job_id: str
    filename: str
    segment_id: int
    start: float
    end: float
    speaker: str | None
    text: str
    snippet: str
    highlights: list[tuple[int, int]]

    def to_dict(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "filename": self.filename,
                "segment_id": self.segment_id, "start": self.start, "end": self.end,
                "speaker": self.speaker, "text": self.text, "snippet": self.snippet,
                "highlights": [list(h) for h in self.highlights]}


def reindex(session: Session, tenant_id: str, job_id: str, transcript: Transcript) -> None:
    """Make the index hold exactly `transcript`'s segments for this job."""
    session.execute(delete(TranscriptSegment).where(TranscriptSegment.job_id == job_id))
    rows = [{"tenant_id": tenant_id, "job_id": job_id, "segment_id": s.id, "start": s.start,
             "end": s.end, "speaker": transcript.speaker_label(s.speaker), "text": s.text}
            for s in transcript.segments if s.text.strip()]
    if rows:
        session.execute(insert(TranscriptSegment), rows)
    session.flush()


def forget(session: Session, job_id: str) -> None:
    session.execute(delete(TranscriptSegment).where(TranscriptSegment.job_id == job_id))


def query_words(query: str) -> list[str]:
    words = _WORD.findall(query.lower())
    if not words:
        raise OptionError("the search needs at least one word", field="q")
    if len(words) > MAX_QUERY_WORDS:
        raise OptionError(f"the search may have at most {MAX_QUERY_WORDS} words", field="q")
    return words


def search(session: Session, tenant_id: str, query: str, limit: int) -> list[Hit]:
    """The best-matching segments of the tenant's transcripts, best first."""
    if not 1 <= limit <= MAX_LIMIT:
        raise OptionError(f"limit must be between 1 and {MAX_LIMIT}", field="limit")
    words = query_words(query)
    if session.get_bind().dialect.name == "postgresql":
        rows = _search_postgres(session, tenant_id, words, limit)
    else:
        rows = _search_sqlite(session, tenant_id, words, limit)
    return [_hit(row) for row in rows]


def _search_sqlite(session: Session, tenant_id: str, words: list[str],
                   limit: int) -> list[Any]:
    # Every word quoted (so nothing in it is FTS5 syntax), the last one as a prefix.
    match = " ".join(f'"{w}"' for w in words) + "*"
    return list(session.execute(text(
        "SELECT s.job_id, j.filename, s.segment_id, s.start, s.\"end\", s.speaker, s.text, "
        "snippet(transcript_segments_fts, 0, char(2), char(3), '…', 24) AS snippet "
        "FROM transcript_segments_fts "
        "JOIN transcript_segments s ON s.id = transcript_segments_fts.rowid "
        "JOIN jobs j ON j.id = s.job_id "
        "WHERE transcript_segments_fts MATCH :match AND s.tenant_id = :tenant "
        "AND j.purged = 0 "
        "ORDER BY transcript_segments_fts.rank, j.created_at DESC, s.segment_id "
        "LIMIT :limit"), {"match": match, "tenant": tenant_id, "limit": limit}))


def _search_postgres(session: Session, tenant_id: str, words: list[str],
                     limit: int) -> list[Any]:
    # The words are \w+ only, so none of to_tsquery's operators can be in them.
    tsquery = " & ".join(words) + ":*"
    options = (f"StartSel={_START}, StopSel={_STOP}, MaxWords=24, MinWords=8, "
               "MaxFragments=2, FragmentDelimiter=\" … \"")
    # The expression `to_tsvector('simple', s.text)` must match the GIN index's exactly.
    return list(session.execute(text(
        "SELECT s.job_id, j.filename, s.segment_id, s.start, s.\"end\", s.speaker, s.text, "
        "ts_headline('simple', s.text, q, :options) AS snippet "
        "FROM transcript_segments s JOIN jobs j ON j.id = s.job_id, "
        "to_tsquery('simple', :query) q "
        "WHERE to_tsvector('simple', s.text) @@ q AND s.tenant_id = :tenant "
        "AND NOT j.purged "
        "ORDER BY ts_rank(to_tsvector('simple', s.text), q) DESC, j.created_at DESC, "
        "s.segment_id LIMIT :limit"),
        {"query": tsquery, "options": options, "tenant": tenant_id, "limit": limit}))


def _hit(row: Any) -> Hit:
    snippet, highlights = _marks(str(row.snippet))
    return Hit(job_id=row.job_id, filename=row.filename, segment_id=row.segment_id,
               start=row.start, end=row.end, speaker=row.speaker, text=row.text,
               snippet=snippet, highlights=highlights)


def _marks(marked: str) -> tuple[str, list[tuple[int, int]]]:
    """Plain text and [start, end) offsets of the highlighted parts.

    Offsets rather than HTML: the text is whatever was said (or typed in an edit), and
    a client that builds its display from offsets cannot be tricked into markup.
    """
    plain: list[str] = []
    spans: list[tuple[int, int]] = []
    length, opened = 0, None
    for char in marked:
        if char == _START:
            opened = length
        elif char == _STOP:
            if opened is not None:
                spans.append((opened, length))
            opened = None
        else:
            plain.append(char)
            length += 1
    return "".join(plain), spans


# --- indexing what is not indexed yet ------------------------------------------------------

def unindexed_jobs(session: Session, tenant_id: str, limit: int) -> list[tuple[str, str]]:
    """(job id, result key) of the tenant's completed jobs missing from the index."""
    rows = session.execute(
        select(Job.id, Job.result_key)
        .where(Job.tenant_id == tenant_id, Job.status == COMPLETED,
               Job.result_key.is_not(None),
               ~exists().where(TranscriptState.job_id == Job.id))
        .order_by(Job.created_at).limit(limit))
    return [(job_id, key) for job_id, key in rows if key is not None]


def add_state(session: Session, tenant_id: str, job_id: str) -> TranscriptState | None:
    """A new state row (revision 0), or None when another transaction made it first."""
    try:
        with session.begin_nested():
            state = TranscriptState(job_id=job_id, tenant_id=tenant_id, revision=0)
            session.add(state)
            session.flush()
    except IntegrityError:
        return None
    return state


def catch_up(db: Database, storage: Storage, tenant_id: str) -> int:
    """Index the tenant's completed jobs that are not indexed yet; returns how many."""
    done = 0
    while True:
        with db.session() as session:
            pending = unindexed_jobs(session, tenant_id, CATCH_UP_BATCH)
        if not pending:
            return done
        # Read before taking the write lock: storage may be slow (S3).
        originals: list[tuple[str, Transcript | None]] = []
        unavailable = False
        for job_id, key in pending:
            try:
                originals.append((job_id, Transcript.from_dict(json.loads(storage.get_bytes(key)))))
            except StorageError:
                unavailable = True  # try again on a later search
            except (HarkError, ValueError, KeyError, TypeError):
                # Gone or unreadable: indexed as empty, not retried on every search.
                originals.append((job_id, None))
        with db.session(write=True) as session:
            for job_id, transcript in originals:
                if session.get(TranscriptState, job_id) is not None:
                    continue  # indexed meanwhile (a concurrent search or an edit)
                if add_state(session, tenant_id, job_id) is not None and transcript:
                    reindex(session, tenant_id, job_id, transcript)
                done += 1
        if unavailable:
            return done
