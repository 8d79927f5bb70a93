"""Transcript revisions and search on both databases, and the edit model on its own.

The database tests run against a SQLite file (FTS5) and the PostgreSQL server (GIN
full-text index), each migrated from empty, with results in local storage, as a
worker leaves them.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from hark.api.state import Principal
from hark.db import Database, open_database
from hark.errors import OptionError
from hark.jobs import service as jobs
from hark.jobs.models import COMPLETED, Job
from hark.jobs.schemas import JobOptions
from hark.jobs.service import NewMedia
from hark.pipeline.transcript import Segment, Speaker, Transcript, Word
from hark.storage.local import LocalStorage
from hark.transcripts import edits, search, service
from hark.transcripts.edits import SegmentChange, WordChange
from hark.transcripts.models import TranscriptSegment
from hark.transcripts.service import RevisionConflictError
from tests.test_db import DATABASES, throwaway_postgres

ALICE = Principal(tenant_id="a", api_key_id=None)


def words(text: str, start: float = 0.0, step: float = 0.5,
          speaker: str | None = "SPEAKER_00") -> list[Word]:
    return [Word(token, round(start + i * step, 3), round(start + i * step + 0.4, 3), 0.9,
                 speaker)
            for i, token in enumerate(text.split())]


def unspaced(*tokens: str, start: float = 0.0) -> list[Word]:
    """Words as Whisper gives them where no space precedes some (ja, hyphens, 's)."""
    return [Word(token.lstrip(" "), start + i * 0.5, start + i * 0.5 + 0.4, 0.9, "SPEAKER_00",
                 leading_space=token.startswith(" "))
            for i, token in enumerate(tokens)]


def make_transcript(*texts: str) -> Transcript:
    segments = []
    for index, text in enumerate(texts):
        start = index * 10.0
        segment_words = words(text, start, speaker=f"SPEAKER_0{index % 2}")
        segments.append(Segment(index, start, segment_words[-1].end, text,
                                f"SPEAKER_0{index % 2}", words=segment_words))
    speakers = [Speaker("SPEAKER_00", speech_seconds=1.0),
                Speaker("SPEAKER_01", name="Bob", profile_id="p-bob", similarity=0.9,
                        speech_seconds=1.0)]
    return Transcript(" ".join(texts), "en", 0.9, 30.0, "pocketsphinx", segments, speakers)


# --- the edit model -----------------------------------------------------------------------

def test_new_text_is_aligned_with_the_words() -> None:
    original = make_transcript("one two three four five")
    segment = original.segments[0]
    old = segment.words
    edited = edits.change(original, original, [SegmentChange(0, text="one 2 and three five six")],
                          {})
    new = edited.segments[0]
    assert [w.word for w in new.words] == ["one", "2", "and", "three", "five", "six"]
    assert new.words[0] == old[0] and new.words[3] == old[2]
    # "two" became "2 and": its span, shared in proportion to the lengths.
    assert (new.words[1].start, new.words[2].end) == (old[1].start, old[1].end)
    assert new.words[1].end == pytest.approx(old[1].start + 0.4 / 4, abs=1e-3)
    assert new.words[1].probability is None and new.words[3].probability == 0.9
    # "four" gone; "six" inserted after "five" at that word's end, zero length.
    assert new.words[4] == old[4]
    assert (new.words[5].start, new.words[5].end) == (old[4].end, old[4].end)
    assert (new.start, new.end, new.text) == (segment.start, segment.end,
                                              "one 2 and three five six")
    assert edited.text == "one 2 and three five six"
    assert original.segments[0].words == old  # the input is never changed


def test_edits_keep_how_words_attach() -> None:
    segment_words = unspaced(" And", " so", " self", "-substantial", " fuel", "'s", " end.")
    original = Transcript("And so self-substantial fuel's end.", "en", 0.9, 9.0, "m", [
        Segment(0, 0.0, 3.4, "And so self-substantial fuel's end.", "SPEAKER_00",
                words=segment_words)])
    edited = edits.change(original, original, [
        SegmentChange(0, words=(WordChange(3, "-sufficient"),))], {})
    assert edited.segments[0].text == "And so self-sufficient fuel's end."
    retexted = edits.change(original, original, [
        SegmentChange(0, text="And so, self-substantial fuels end.")], {})
    new = retexted.segments[0].words
    assert [(w.word, w.leading_space) for w in new] == [
        ("And", True), ("so,", True), ("self", True), ("-substantial", False),
        ("fuel", True), ("s", False), ("end.", True)]
    # Unchanged words keep their timings and probabilities.
    assert new[2] == segment_words[2] and new[3] == segment_words[3]
    assert new[1].probability is None
    assert retexted.segments[0].text == "And so, self-substantial fuels end."
    emptied = edits.change(original, original, [SegmentChange(0, text="   ")], {})
    assert emptied.segments[0].words == [] and emptied.segments[0].text == ""


def test_edits_in_a_language_without_spaces_keep_its_words() -> None:
    segment_words = unspaced("客観", "的", "実在", "。")
    original = Transcript("客観的実在。", "ja", 0.9, 2.0, "m", [
        Segment(0, 0.0, 1.9, "客観的実在。", words=segment_words)])
    edited = edits.change(original, original, [SegmentChange(0, text="客観的な実在。")], {})
    new = edited.segments[0].words
    # The inserted character joins the word before it; every other word is kept whole.
    assert [w.word for w in new] == ["客観", "的な", "実在", "。"]
    assert new[0] == segment_words[0] and new[2:] == segment_words[2:]
    assert (new[1].start, new[1].end) == (segment_words[1].start, segment_words[1].end)
    assert not any(w.leading_space for w in new[1:])
    assert edited.segments[0].text == edited.text == "客観的な実在。"


def test_renames_and_taking_them_back() -> None:
    original = make_transcript("hello there", "general kenobi")
    renamed = edits.change(original, original, [], {"SPEAKER_00": "Ann", "SPEAKER_01": "Ben"})
    ann, ben = renamed.speakers
    assert (ann.name, ann.profile_id) == ("Ann", None)
    # A renamed identified speaker loses the profile and the similarity it no longer has.
    assert (ben.name, ben.profile_id, ben.similarity) == ("Ben", None, None)
    assert edits.diff(original, renamed) == {"segments": {}, "speakers": {
        "SPEAKER_00": {"name": "Ann", "profile_id": None},
        "SPEAKER_01": {"name": "Ben", "profile_id": None}}}
    back = edits.change(original, renamed, [], {"SPEAKER_01": None, "SPEAKER_00": ""})
    assert back.speakers == original.speakers
    assert edits.diff(original, back) == edits.empty_edits()


def test_stored_edits_rebuild_the_transcript() -> None:
    original = make_transcript("a b c", "d e f", "g h i")
    edited = edits.change(original, original, [SegmentChange(1, text="d x f"),
                                               SegmentChange(2, words=(WordChange(0, "G"),))],
                          {"SPEAKER_00": "Ann"})
    stored = json.loads(json.dumps(edits.diff(original, edited)))
    assert set(stored["segments"]) == {"1", "2"}
    assert edits.apply_edits(original, stored) == edited
    assert edits.apply_edits(original, edits.empty_edits()) == original


@pytest.mark.parametrize(("change", "field"), [
    (SegmentChange(5, text="x"), "segments.0.id"),
    (SegmentChange(0), "segments.0"),
    (SegmentChange(0, words=(WordChange(9, "x"),)), "segments.0.words.0.index"),
    (SegmentChange(0, words=(WordChange(0, " "),)), "segments.0.words.0.word"),
    (SegmentChange(0, text="x" * 10_001), "segments.0.text"),
])
def test_impossible_changes_name_their_field(change: SegmentChange, field: str) -> None:
    original = make_transcript("a b c")
    with pytest.raises(OptionError) as caught:
        edits.change(original, original, [change], {})
    assert caught.value.details["field"] == field


# --- on the databases ---------------------------------------------------------------------

@dataclass
class Store:
    db: Database
    storage: LocalStorage

    def completed(self, transcript: Transcript, tenant: str = "a",
                  filename: str = "talk.wav") -> str:
        with self.db.session(write=True) as session:
            job = jobs.create_job(
                session, tenant_id=tenant, api_key_id=None, options=JobOptions(),
                model="pocketsphinx", max_queued=100,
                media=NewMedia(key="media/x/source", filename=filename, size=1, duration=30.0))
            key = f"results/{job.id}/transcript-1.json"
            self.storage.put_bytes(key, json.dumps(transcript.to_dict()).encode())
            session.execute(update(Job).where(Job.id == job.id)
                            .values(status=COMPLETED, result_key=key, finished_at=func.now()))
            return job.id

    def search(self, query: str, tenant: str = "a", limit: int = 20) -> list[search.Hit]:
        search.catch_up(self.db, self.storage, tenant)
        with self.db.session() as session:
            return search.search(session, tenant, query, limit)

    def save(self, job_id: str, segments: list[SegmentChange] | None = None,
             speakers: dict[str, str | None] | None = None,
             base: int | None = None) -> service.Current:
        with self.db.session(write=True) as session:
            current, _ = service.save(session, self.storage, ALICE, job_id,
                                      segments=segments or [], speakers=speakers or {},
                                      base_revision=base)
        return current


@pytest.fixture(params=DATABASES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    storage = LocalStorage(tmp_path / "storage")
    if request.param == "sqlite":
        database = open_database(f"sqlite:///{tmp_path / 'hark.db'}")
        yield Store(database, storage)
        database.dispose()
    else:
        with throwaway_postgres() as url:
            database = open_database(url)
            yield Store(database, storage)
            database.dispose()


def test_search_indexes_completed_jobs_on_first_use(store: Store) -> None:
    first = store.completed(make_transcript("the quick brown fox", "jumps over the lazy dog"))
    second = store.completed(make_transcript("a quick café in the square"), filename="b.wav")
    store.completed(make_transcript("quick but not mine"), tenant="b")
    hits = store.search("QUICK")
    assert {(h.job_id, h.segment_id) for h in hits} == {(first, 0), (second, 0)}
    hit = next(h for h in hits if h.job_id == first)
    assert (hit.filename, hit.start, hit.end, hit.speaker) == ("talk.wav", 0.0, 1.9,
                                                               "SPEAKER_00")
    assert hit.text == "the quick brown fox"
    assert [hit.snippet[a:b] for a, b in hit.highlights] == ["quick"]
    # Every word must occur; the last one may be the start of a word.
    assert [(h.job_id, h.segment_id) for h in store.search("lazy do")] == [(first, 1)]
    assert store.search("quick dog") == []
    assert [h.job_id for h in store.search("café")] == [second]
    assert [h.job_id for h in store.search("mine", tenant="b")] != []
    assert store.search("mine") == []
    assert len(store.search("quick", limit=1)) == 1
    # Indexed once: a second catch-up finds nothing to do.
    assert search.catch_up(store.db, store.storage, "a") == 0


def test_revisions_reindex_and_restore(store: Store) -> None:
    job_id = store.completed(make_transcript("the quick brown fox", "jumps over the dog"))
    store.search("fox")
    current = store.save(job_id, segments=[SegmentChange(0, text="the quick red fox")],
                         speakers={"SPEAKER_01": "Rex"}, base=0)
    assert current.revision == 1 and current.edited
    (hit,) = store.search("red")
    assert hit.segment_id == 0 and hit.text == "the quick red fox"
    assert store.search("brown") == []
    assert store.search("jumps")[0].speaker == "Rex"
    with pytest.raises(RevisionConflictError):
        store.save(job_id, speakers={"SPEAKER_00": "Ann"}, base=0)
    with store.db.session(write=True) as session:
        restored, changed = service.restore(session, store.storage, ALICE, job_id)
    assert changed and restored.revision == 2 and not restored.edited
    assert [h.segment_id for h in store.search("brown")] == [0]
    with store.db.session() as session:
        assert service.read(session, store.storage, "a", job_id, 1).transcript.segments[0].text \
            == "the quick red fox"
        history = service.revisions(session, "a", job_id)
    assert [r["kind"] for r in history] == ["original", "edit", "restore"]
    # A purge (as DELETE ?purge=true does it): nothing left, nothing indexed again.
    with store.db.session(write=True) as session:
        jobs.mark_purged(jobs.get_job(session, "a", job_id))
        service.forget(session, job_id)
    assert store.search("brown") == []
    with store.db.session() as session:
        assert session.scalar(select(func.count()).select_from(TranscriptSegment)) == 0


def test_concurrent_edits_get_consecutive_revisions(store: Store) -> None:
    job_id = store.completed(make_transcript(*(f"segment number {i}" for i in range(8))))
    errors: list[BaseException] = []

    def edit(index: int) -> None:
        try:
            store.save(job_id, segments=[SegmentChange(index, text=f"edited {index}")])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=edit, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    with store.db.session() as session:
        current = service.read(session, store.storage, "a", job_id)
        rows = session.scalar(select(func.count()).select_from(TranscriptSegment)
                              .where(TranscriptSegment.job_id == job_id))
    assert current.revision == 8
    assert [s.text for s in current.transcript.segments] == [f"edited {i}" for i in range(8)]
    assert rows == 8
