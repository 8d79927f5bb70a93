"""Voice profiles: the store on real databases, identification over it, and the CLI."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from hark.audit.actor import COMMAND_LINE
from hark.config import Settings
from hark.db import Database, open_database
from hark.errors import (
    EmbeddingMismatchError,
    InsufficientSpeechError,
    OptionError,
    SpeakerNotFoundError,
)
from hark.pipeline.audio import SAMPLE_RATE, load_audio
from hark.pipeline.diarization.identify import match_speakers
from hark.speakers import service
from hark.speakers.models import VoiceSample
from hark.speakers.service import NewSample
from tests.test_db import DATABASES, throwaway_postgres

DIM = 8
ASR = "asr"
# Two LibriSpeech readers, each with clips to enrol and one held out, and a third reader.
READER_A = ["librispeech_1988-24833-0001.flac", "librispeech_1988-24833-0000.flac"]
READER_A_HELD_OUT = "librispeech_1988-24833-0003.flac"
READER_B = ["librispeech_3752-4944-0001.flac", "librispeech_3752-4944-0000.flac"]
READER_B_HELD_OUT = "librispeech_3752-4944-0002.flac"
STRANGER = "librispeech_61-70968-0000.flac"


@pytest.fixture(params=DATABASES)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A migrated database of each kind."""
    if request.param == "sqlite":
        with open_database(f"sqlite:///{tmp_path / 'hark.db'}") as db:
            yield db
    else:
        with throwaway_postgres() as url, open_database(url) as db:
            yield db


def basis(index: int) -> np.ndarray:
    vector = np.zeros(DIM, dtype=np.float32)
    vector[index] = 1.0
    return vector


def toward(a: np.ndarray, b: np.ndarray, similarity: float) -> np.ndarray:
    """A unit vector with cosine `similarity` to unit `a`, leaning towards orthogonal `b`."""
    vector: np.ndarray = (similarity * a + np.sqrt(1 - similarity**2) * b).astype(np.float32)
    return vector


def sample(vector: np.ndarray, seconds: float = 4.0, embedder: str = "test",
           source: str | None = None) -> NewSample:
    return NewSample(embedding=vector, speech_seconds=seconds, embedder=embedder, source=source)


def count_samples(db: Database) -> int:
    with db.session() as session:
        return session.scalar(sa.select(sa.func.count()).select_from(VoiceSample)) or 0


# The store


def enroll_vectors(db: Database, voices: dict[str, np.ndarray]) -> dict[str, str]:
    with db.session(write=True) as session:
        return {name: service.enroll(session, "local", name, [sample(v)], actor=COMMAND_LINE).id
                for name, v in voices.items()}


def test_enroll_creates_a_profile(database: Database) -> None:
    with database.session(write=True) as session:
        profile = service.enroll(session, "local", "  Ada   Lovelace ",
                                 [sample(basis(0) * 3, 4.5, source="ada.wav")], actor=COMMAND_LINE)
    with database.session() as session:
        (stored,) = service.list_profiles(session, "local")
        assert stored.id == profile.id and len(stored.id) == 36
        assert stored.name == "Ada Lovelace"
        assert (stored.tenant_id, stored.embedder, stored.dimension) == ("local", "test", DIM)
        assert (stored.sample_count, stored.speech_seconds) == (1, 4.5)
        np.testing.assert_allclose(stored.centroid_vector, basis(0))
        (voice,) = stored.samples
        assert voice.source == "ada.wav" and voice.speech_seconds == 4.5
        assert stored.created_at.tzinfo is not None


def test_enrolling_a_name_again_adds_samples_and_reweights_the_centroid(
    database: Database,
) -> None:
    first = toward(basis(0), basis(1), 0.9)
    second = toward(basis(0), basis(2), 0.6) * 5.0  # length must not count, only direction
    third = basis(3)
    with database.session(write=True) as session:
        created = service.enroll(session, "local", "Ada", [sample(first, 3.0)], actor=COMMAND_LINE)
    created_at, updated_before = created.created_at, created.updated_at
    time.sleep(0.01)
    with database.session(write=True) as session:
        grown = service.enroll(session, "local", "Ada",
                               [sample(second, 6.0), sample(third, 12.0)], actor=COMMAND_LINE)
    assert grown.id == created.id
    with database.session() as session:
        profile = service.get_profile(session, "local", created.id)
        assert profile.sample_count == 3 and profile.speech_seconds == pytest.approx(21.0)
        units = [v / np.linalg.norm(v) for v in (first, second, third)]
        expected = 3.0 * units[0] + 6.0 * units[1] + 12.0 * units[2]
        expected /= np.linalg.norm(expected)
        np.testing.assert_allclose(profile.centroid_vector, expected, atol=1e-6)
        assert profile.created_at == created_at and profile.updated_at > updated_before
        assert len(service.list_profiles(session, "local")) == 1


def test_add_samples_by_id(database: Database) -> None:
    with database.session(write=True) as session:
        profile = service.enroll(session, "local", "Ada", [sample(basis(0))], actor=COMMAND_LINE)
    with database.session(write=True) as session:
        service.add_samples(session, "local", profile.id, [sample(basis(1))], actor=COMMAND_LINE)
        with pytest.raises(SpeakerNotFoundError):
            service.add_samples(session, "other", profile.id, [sample(basis(1))],
                                actor=COMMAND_LINE)
    with database.session() as session:
        stored = service.get_profile(session, "local", profile.id)
        assert stored.sample_count == 2
        np.testing.assert_allclose(stored.centroid_vector, toward(basis(0), basis(1), 0.5**0.5),
                                   atol=1e-6)


def test_bad_enrolments_are_refused_and_store_nothing(database: Database) -> None:
    with database.session(write=True) as session:
        service.enroll(session, "local", "Ada", [sample(basis(0), embedder="resemblyzer")],
                       actor=COMMAND_LINE)
    cases: list[tuple[type[Exception], str, list[NewSample]]] = [
        (InsufficientSpeechError, "Bea", [sample(basis(1)), sample(basis(2), 2.5)]),
        (OptionError, "Bea", []),
        (OptionError, "   ", [sample(basis(1))]),
        (OptionError, "x" * 201, [sample(basis(1))]),
        (OptionError, "Bea", [sample(np.zeros(DIM, np.float32))]),
        (EmbeddingMismatchError, "Bea", [sample(basis(1)), sample(np.ones(4, np.float32))]),
        (EmbeddingMismatchError, "Ada", [sample(basis(1), embedder="pyannote")]),
        (EmbeddingMismatchError, "Ada",
         [sample(np.ones(4, np.float32), embedder="resemblyzer")]),
    ]
    for error, name, samples in cases:
        with pytest.raises(error), database.session(write=True) as session:
            service.enroll(session, "local", name, samples, actor=COMMAND_LINE)
    with database.session() as session:
        (only,) = service.list_profiles(session, "local")
        assert (only.name, only.sample_count) == ("Ada", 1)
    assert count_samples(database) == 1


def test_delete_by_id_or_name_cascades_to_samples(database: Database) -> None:
    with database.session(write=True) as session:
        ada = service.enroll(session, "local", "Ada", [sample(basis(0)), sample(basis(1))],
                             actor=COMMAND_LINE)
        service.enroll(session, "local", "Bea", [sample(basis(2))], actor=COMMAND_LINE)
    assert count_samples(database) == 3
    with database.session(write=True) as session:
        assert service.delete_profile(session, "local", ada.id, actor=COMMAND_LINE).name == "Ada"
    assert count_samples(database) == 1
    with database.session(write=True) as session:
        service.delete_profile(session, "local", "Bea", actor=COMMAND_LINE)
        with pytest.raises(SpeakerNotFoundError):
            service.delete_profile(session, "local", "Bea", actor=COMMAND_LINE)
    assert count_samples(database) == 0
    # The cascade is the database's own, not only the ORM's.
    with database.session(write=True) as session:
        service.enroll(session, "local", "Cy", [sample(basis(3))], actor=COMMAND_LINE)
    with database.engine.begin() as connection:
        connection.exec_driver_sql("DELETE FROM speaker_profiles")
    assert count_samples(database) == 0


def test_tenants_are_isolated(database: Database) -> None:
    with database.session(write=True) as session:
        mine = service.enroll(session, "local", "Ada", [sample(basis(0))], actor=COMMAND_LINE)
        theirs = service.enroll(session, "acme", "Ada", [sample(basis(1))], actor=COMMAND_LINE)
    assert mine.id != theirs.id
    with database.session(write=True) as session:
        assert [p.id for p in service.list_profiles(session, "acme")] == [theirs.id]
        assert [p.id for p in service.profiles_for_matching(session, "local")] == [mine.id]
        with pytest.raises(SpeakerNotFoundError):
            service.get_profile(session, "acme", mine.id)
        with pytest.raises(SpeakerNotFoundError):
            service.delete_profile(session, "acme", mine.id, actor=COMMAND_LINE)
        service.delete_profile(session, "acme", "Ada", actor=COMMAND_LINE)
    with database.session() as session:
        assert service.list_profiles(session, "acme") == []
        assert service.get_profile(session, "local", mine.id).name == "Ada"


@pytest.mark.services  # a throwaway PostgreSQL database of its own
@pytest.mark.parametrize("existing", [False, True], ids=["new-name", "existing-name"])
def test_concurrent_enrolments_under_one_name_keep_every_sample(existing: bool) -> None:
    # PostgreSQL: the second enrolment waits for the first (on the unique index for a
    # new name, on the row lock for an existing one), then builds on what it committed.
    with throwaway_postgres() as url, open_database(url) as database:
        if existing:
            enroll_vectors(database, {"Ada": basis(2)})
        done = threading.Event()

        def second() -> None:
            with database.session() as other:
                service.enroll(other, "local", "Ada", [sample(basis(1), 6.0)], actor=COMMAND_LINE)
            done.set()

        with database.session() as session:
            service.enroll(session, "local", "Ada", [sample(basis(0), 3.0)], actor=COMMAND_LINE)
            thread = threading.Thread(target=second)
            thread.start()
            assert not done.wait(0.5)
        thread.join(timeout=30)
        assert done.is_set()
        with database.session() as session:
            (profile,) = service.list_profiles(session, "local")
            vectors = [basis(0) * 3.0, basis(1) * 6.0] + ([basis(2) * 4.0] if existing else [])
            expected = np.sum(vectors, axis=0)
            assert profile.sample_count == len(vectors)
            np.testing.assert_allclose(profile.centroid_vector, expected / np.linalg.norm(expected),
                                       atol=1e-6)


# Identification over stored profiles


def test_speakers_get_the_right_names_or_stay_unknown(database: Database) -> None:
    ids = enroll_vectors(database, {"Ada": basis(0), "Bea": basis(1), "Cy": basis(2)})
    with database.session() as session:
        profiles = service.profiles_for_matching(session, "local")
    diarized = {
        "SPEAKER_00": toward(basis(1), basis(5), 0.9),
        "SPEAKER_01": toward(basis(0), basis(6), 0.8),
        "SPEAKER_02": toward(basis(2), basis(7), 0.5),  # nearest to Cy, but not near enough
    }
    matches = match_speakers(diarized, profiles, threshold=0.75)
    assert {s: m.name for s, m in matches.items()} == {"SPEAKER_00": "Bea", "SPEAKER_01": "Ada"}
    assert matches["SPEAKER_00"].profile_id == ids["Bea"]
    assert matches["SPEAKER_00"].similarity == pytest.approx(0.9, abs=1e-4)
    assert matches["SPEAKER_01"].similarity == pytest.approx(0.8, abs=1e-4)


def test_two_speakers_never_share_a_profile(database: Database) -> None:
    enroll_vectors(database, {"Ada": basis(0)})
    with database.session() as session:
        profiles = service.profiles_for_matching(session, "local")
    both_like_ada = {"SPEAKER_00": toward(basis(0), basis(1), 0.85),
                     "SPEAKER_01": toward(basis(0), basis(2), 0.95)}
    matches = match_speakers(both_like_ada, profiles, threshold=0.75)
    assert {s: m.name for s, m in matches.items()} == {"SPEAKER_01": "Ada"}

    # With a second profile, the less similar speaker takes the next best one.
    enroll_vectors(database, {"Bea": toward(basis(0), basis(1), 0.5)})
    with database.session() as session:
        profiles = service.profiles_for_matching(session, "local")
    both_like_ada = {"SPEAKER_00": toward(basis(0), basis(1), 0.9),
                     "SPEAKER_01": toward(basis(0), basis(2), 0.95)}
    matches = match_speakers(both_like_ada, profiles, threshold=0.5)
    assert {s: m.name for s, m in matches.items()} == {"SPEAKER_00": "Bea", "SPEAKER_01": "Ada"}


def test_profiles_for_matching_leaves_out_other_embedders(database: Database) -> None:
    with database.session(write=True) as session:
        service.enroll(session, "local", "Ada", [sample(basis(0), embedder="resemblyzer")],
                       actor=COMMAND_LINE)
        service.enroll(session, "local", "Bea",
                       [sample(np.ones(512, np.float32), embedder="pyannote")], actor=COMMAND_LINE)
        assert [p.name for p in service.profiles_for_matching(session, "local")] == \
            ["Ada", "Bea"]
        (profile,) = service.profiles_for_matching(session, "local", embedder="resemblyzer")
        assert profile.name == "Ada" and profile.embedding.shape == (DIM,)


# Real recordings


def cut(source: Path, seconds: float, target: Path) -> Path:
    """The first `seconds` of `source`, written as 16 kHz WAV."""
    _, audio = load_audio(source)
    pcm = (np.clip(audio[: int(seconds * SAMPLE_RATE)], -1, 1) * 32767).astype(np.int16)
    with av.open(str(target), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=SAMPLE_RATE, layout="mono")
        frame = av.AudioFrame.from_ndarray(pcm[None, :], format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = 0
        frame.time_base = Fraction(1, SAMPLE_RATE)
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return target


@pytest.mark.corpus
def test_too_little_speech_is_refused_before_embedding(
    corpus_dir: Path, settings: Settings, tmp_path: Path
) -> None:
    from hark.speakers.embedding import embed_recording

    short = cut(corpus_dir / ASR / READER_A[1], 2.0, tmp_path / "short.wav")
    with pytest.raises(InsufficientSpeechError, match="at least 3 s") as caught:
        embed_recording(short, settings)
    assert caught.value.code == "INSUFFICIENT_SPEECH"
    assert caught.value.details["speech_seconds"] < 3.0


@pytest.mark.corpus
def test_enrolled_voices_identify_held_out_recordings(
    corpus_dir: Path, settings: Settings, tmp_path: Path
) -> None:
    from hark.speakers.embedding import embed_recording, sample_from_recording

    asr = corpus_dir / ASR
    with open_database(settings.database) as database:
        with database.session(write=True) as session:
            for name, clip in (("Ada", READER_A[0]), ("Bea", READER_B[0])):
                service.enroll(session, "local", name,
                               [sample_from_recording(asr / clip, settings)], actor=COMMAND_LINE)
        with database.session() as session:
            profiles = service.profiles_for_matching(session, "local",
                                                     embedder=settings.diarizer)
    assert [(p.name, p.embedding.shape) for p in profiles] == [("Ada", (256,)), ("Bea", (256,))]
    diarized = {speaker: embed_recording(asr / f, settings)[0] for speaker, f in
                (("SPEAKER_00", READER_B_HELD_OUT), ("SPEAKER_01", READER_A_HELD_OUT),
                 ("SPEAKER_02", STRANGER))}
    matches = match_speakers(diarized, profiles, settings.speaker_match_threshold)
    assert {s: m.name for s, m in matches.items()} == {"SPEAKER_00": "Bea", "SPEAKER_01": "Ada"}
    assert all(m.similarity >= settings.speaker_match_threshold for m in matches.values())


@pytest.mark.corpus
def test_cli_enroll_list_rm(cli_env: Path, corpus_dir: Path, tmp_path: Path) -> None:
    from hark.cli.speakers import app

    runner = CliRunner()
    asr = corpus_dir / ASR
    a0, a1 = (str(asr / f) for f in READER_A)

    result = runner.invoke(app, ["enroll", "Ada", a0])
    assert result.exit_code == 0, result.output
    assert "Enrolled Ada: profile " in result.stdout and "1 sample," in result.stdout
    ada_id = result.stdout.split("profile ")[1].split(",")[0]
    assert (cli_env / "hark.db").is_file()

    result = runner.invoke(app, ["enroll", "Ada", a1])
    assert result.exit_code == 0, result.output
    assert f"profile {ada_id}, 2 samples" in result.stdout

    result = runner.invoke(app, ["enroll", "Bea", str(asr / READER_B[1])])
    assert result.exit_code == 0, result.output

    # One bad file among good ones: an error line for it, and nothing stored at all.
    short = cut(asr / READER_B[0], 1.5, tmp_path / "short.wav")
    missing = tmp_path / "missing.wav"
    result = runner.invoke(app, ["enroll", "Cy", str(asr / READER_B_HELD_OUT), str(short),
                                 str(missing)])
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 2
    assert "short.wav" in errors[0] and "INSUFFICIENT_SPEECH" in errors[0]
    assert "missing.wav" in errors[1]
    assert "Traceback" not in result.output

    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.stdout.splitlines()[1:]]
    assert [(r[0], r[1], r[2]) for r in rows] == [(ada_id, "Ada", "2"), (rows[1][0], "Bea", "1")]
    assert "Cy" not in result.stdout

    result = runner.invoke(app, ["rm", "Bea"])
    assert result.exit_code == 0 and result.stdout.startswith("Removed Bea (")
    result = runner.invoke(app, ["rm", ada_id])
    assert result.exit_code == 0 and result.stdout.strip() == f"Removed Ada ({ada_id})"
    result = runner.invoke(app, ["rm", "Ada"])
    assert result.exit_code == 1 and "SPEAKER_NOT_FOUND" in result.stderr
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0 and result.stdout == "" and "No voice profiles" in result.stderr

    result = runner.invoke(app, ["enroll", " ", a0])
    assert result.exit_code == 2 and "INVALID_OPTION" in result.stderr


def test_cli_help_states_the_enrolment_minimum() -> None:
    from hark.cli import speakers

    assert speakers.MIN_SPEECH_SECONDS == service.MIN_SPEECH_SECONDS
