"""Speaker diarization: the Resemblyzer diarizer, its clustering, and the pyannote wrapper.

The synthetic conversations under tests/fixtures/conversations are espeak-ng voices
taking turns, with exact reference turns (see tests/support/conversations.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hark.config import Settings
from hark.errors import MissingDependencyError, OptionError
from hark.evaluation.diarization import DiarizationItem, DiarizationResult, pooled, read_rttm, score
from hark.pipeline.audio import SAMPLE_RATE, load_audio
from hark.pipeline.diarization.base import Diarization, DiarizationOptions
from hark.pipeline.diarization.clustering import (
    CountBounds,
    cluster_speakers,
    relabel_by_appearance,
    viterbi,
)
from hark.pipeline.diarization.resemblyzer import ResemblyzerDiarizer
from hark.pipeline.diarization.select import load_diarizer
from hark.pipeline.vad import Chunk, VadOptions, detect_speech
from tests.support.conversations import Conversation, fixture_names, load_fixture

REGION_SECONDS = 15.0
# Pooled DER at collar 0 measured on the corpus set is 23.2 %; the bound leaves a
# small margin for numerical differences between machines.
CORPUS_DER_BOUND = 0.27


@pytest.fixture(scope="module")
def diarizer() -> ResemblyzerDiarizer:
    return ResemblyzerDiarizer()


@pytest.fixture(scope="module")
def conversations() -> dict[str, tuple[Conversation, list[Chunk]]]:
    out = {}
    for name in fixture_names():
        conversation = load_fixture(name)
        out[name] = (conversation, detect_speech(conversation.audio, VadOptions(),
                                                 REGION_SECONDS))
    return out


def one_voice(conversation: Conversation, speaker: str, part: slice = slice(None)) -> np.ndarray:
    """The turns of one speaker from a conversation, half a second apart."""
    pause = np.zeros(SAMPLE_RATE // 2, dtype=np.float32)
    pieces = []
    for turn in [t for t in conversation.turns if t.speaker == speaker][part]:
        pieces += [conversation.audio[int(turn.start * SAMPLE_RATE):int(turn.end * SAMPLE_RATE)],
                   pause]
    return np.concatenate(pieces)


def run(diarizer: ResemblyzerDiarizer, audio: np.ndarray, **hints: int) -> Diarization:
    regions = detect_speech(audio, VadOptions(), REGION_SECONDS)
    return diarizer.diarize(audio, regions, DiarizationOptions(**hints))


def collar0_der(conversation: Conversation, diarization: Diarization) -> float:
    reference = [(t.start, t.end, t.speaker) for t in conversation.turns]
    duration = conversation.audio.size / SAMPLE_RATE
    return score(reference, diarization, (0.0, duration))["collar 0"]["der"]


@pytest.mark.parametrize("name", ["two_voices", "three_voices", "four_voices"])
def test_synthetic_conversations_get_the_speaker_count_and_low_der(
        diarizer, conversations, name) -> None:
    conversation, regions = conversations[name]
    diarization = diarizer.diarize(conversation.audio, regions, DiarizationOptions())
    assert len(diarization.speakers) == len(conversation.speakers)
    assert collar0_der(conversation, diarization) <= 0.05


def test_labels_follow_first_appearance_and_turns_stay_in_speech(diarizer, conversations) -> None:
    _, regions = conversations["four_voices"]
    audio = conversations["four_voices"][0].audio
    diarization = diarizer.diarize(audio, regions, DiarizationOptions())
    assert diarization.speakers == [f"SPEAKER_{i:02d}" for i in range(len(diarization.speakers))]
    starts = [t.start for t in diarization.turns]
    assert starts == sorted(starts)
    for turn in diarization.turns:
        assert turn.end > turn.start
        assert any(r.start_s <= turn.start and turn.end <= r.end_s for r in regions)


def test_each_speaker_gets_a_unit_length_embedding(diarizer, conversations) -> None:
    conversation, regions = conversations["three_voices"]
    diarization = diarizer.diarize(conversation.audio, regions, DiarizationOptions())
    assert sorted(diarization.embeddings) == sorted(diarization.speakers)
    for vector in diarization.embeddings.values():
        assert vector.shape == (256,)
        assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)


def test_one_voice_is_one_speaker(diarizer, conversations) -> None:
    conversation, _ = conversations["three_voices"]
    for speaker in conversation.speakers:
        assert len(run(diarizer, one_voice(conversation, speaker)).speakers) == 1


def test_no_speech_gives_no_turns(diarizer) -> None:
    quiet = np.random.default_rng(0).normal(0, 1e-4, 5 * SAMPLE_RATE).astype(np.float32)
    assert detect_speech(quiet, VadOptions(), REGION_SECONDS) == []
    result = diarizer.diarize(quiet, [], DiarizationOptions())
    assert result.turns == [] and result.embeddings == {}
    assert diarizer.diarize(np.zeros(0, np.float32), [], DiarizationOptions()).turns == []


def test_num_speakers_forces_the_count(diarizer, conversations) -> None:
    two, regions2 = conversations["two_voices"]
    four, regions4 = conversations["four_voices"]
    assert len(diarizer.diarize(two.audio, regions2,
                                DiarizationOptions(num_speakers=3)).speakers) == 3
    assert len(diarizer.diarize(four.audio, regions4,
                                DiarizationOptions(num_speakers=2)).speakers) == 2
    voice = one_voice(two, two.speakers[0])
    assert len(run(diarizer, voice, num_speakers=2).speakers) == 2


def test_min_and_max_speakers_bound_the_automatic_count(diarizer, conversations) -> None:
    two, regions2 = conversations["two_voices"]
    four, regions4 = conversations["four_voices"]
    assert len(diarizer.diarize(four.audio, regions4,
                                DiarizationOptions(max_speakers=3)).speakers) == 3
    assert len(diarizer.diarize(two.audio, regions2,
                                DiarizationOptions(min_speakers=3)).speakers) == 3
    # Bounds that hold the true count leave it alone.
    assert len(diarizer.diarize(four.audio, regions4,
                                DiarizationOptions(min_speakers=2, max_speakers=6)).speakers) == 4
    voice = one_voice(two, two.speakers[0])
    assert len(run(diarizer, voice, min_speakers=2).speakers) == 2


def test_embed_tells_voices_apart(diarizer, conversations) -> None:
    conversation, _ = conversations["four_voices"]
    halves = {s: (diarizer.embed(one_voice(conversation, s, slice(0, None, 2))),
                  diarizer.embed(one_voice(conversation, s, slice(1, None, 2))))
              for s in conversation.speakers}
    for speaker, (first, second) in halves.items():
        assert first.dtype == np.float32 and first.shape == (256,)
        assert np.linalg.norm(first) == pytest.approx(1.0, abs=1e-5)
        same = float(first @ second)
        for other, (a, b) in halves.items():
            if other != speaker:
                assert same > max(float(first @ a), float(first @ b), float(second @ a))


def test_embed_matches_the_diarized_speaker(diarizer, conversations) -> None:
    conversation, regions = conversations["two_voices"]
    diarization = diarizer.diarize(conversation.audio, regions, DiarizationOptions())
    first = conversation.turns[0]
    enrolled = diarizer.embed(one_voice(conversation, first.speaker))
    similarity = {s: float(enrolled @ v) for s, v in diarization.embeddings.items()}
    assert max(similarity, key=lambda s: similarity[s]) == "SPEAKER_00"
    assert similarity["SPEAKER_00"] > 0.9


def test_viterbi_ignores_a_single_stray_window() -> None:
    scores = np.array([[0.9, 0.6]] * 5 + [[0.6, 0.63]] + [[0.9, 0.6]] * 5)
    assert viterbi(scores, penalty=0.05).tolist() == [0] * 11
    assert viterbi(scores, penalty=0.0)[5] == 1


def test_clustering_on_arrays() -> None:
    rng = np.random.default_rng(1)
    centres = np.linalg.qr(rng.normal(size=(64, 3)))[0].T
    labels = np.repeat([2, 0, 1, 0, 2, 1], 12)
    vectors = centres[labels] + rng.normal(0, 0.08, (labels.size, 64))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    found = cluster_speakers(vectors, CountBounds.of(None, None, None, labels.size))
    assert found.tolist() == relabel_by_appearance(labels).tolist()
    assert set(cluster_speakers(vectors, CountBounds.of(2, None, None, labels.size))) == {0, 1}
    assert set(cluster_speakers(vectors[:12], CountBounds.of(None, None, None, 12))) == {0}
    assert cluster_speakers(vectors[:0], CountBounds.of(None, None, None, 0)).size == 0


def test_count_bounds() -> None:
    assert CountBounds.of(3, None, None, 100) == CountBounds(3, 3)
    assert CountBounds.of(None, 2, 5, 100) == CountBounds(2, 5)
    assert CountBounds.of(None, None, None, 4) == CountBounds(1, 4)
    assert CountBounds.of(5, None, None, 2) == CountBounds(2, 2)


@pytest.mark.corpus
def test_corpus_der_with_automatic_count(diarizer, corpus_dir: Path) -> None:
    manifest = corpus_dir / "diarization" / "manifest.jsonl"
    results = []
    for line in manifest.read_text().splitlines():
        row = json.loads(line)
        _, audio = load_audio(corpus_dir / row["audio"])
        reference = read_rttm(corpus_dir / row["rttm"])
        diarization = run(diarizer, audio)
        item = DiarizationItem(row["id"], corpus_dir / row["audio"], corpus_dir / row["rttm"],
                               None, None)
        result = DiarizationResult(item, row["num_speakers"], len(diarization.speakers))
        duration = audio.size / SAMPLE_RATE
        result.components = score(reference, diarization, tuple(row.get("uem") or (0, duration)))
        results.append(result)
        assert result.found_speakers == row["num_speakers"], row["id"]
    assert pooled(results, "collar 0")["der"] <= CORPUS_DER_BOUND


@pytest.mark.corpus
def test_a_real_single_speaker_recording_is_one_speaker(diarizer, corpus_dir: Path) -> None:
    _, audio = load_audio(corpus_dir / "asr" / "librivox_shakespeare_sonnet_001.mp3")
    assert len(run(diarizer, audio).speakers) == 1


def test_pyannote_needs_a_local_model(tmp_path: Path) -> None:
    from hark.pipeline.diarization.pyannote import PyannoteDiarizer

    with pytest.raises(OptionError, match="HARK_PYANNOTE_MODEL"):
        PyannoteDiarizer(None)
    with pytest.raises(OptionError, match="does not exist"):
        PyannoteDiarizer(tmp_path / "missing")


def test_pyannote_without_the_package_says_how_to_install(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    try:
        import pyannote.audio  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("pyannote.audio is installed")
    (tmp_path / "config.yaml").write_text("pipeline: {}\n")
    settings = Settings(_env_file=None, data_dir=tmp_path, diarizer="pyannote",
                        pyannote_model=tmp_path)
    with pytest.raises(MissingDependencyError, match=r"hark\[pyannote\]"):
        load_diarizer(settings)
