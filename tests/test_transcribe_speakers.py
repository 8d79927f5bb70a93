"""Diarization and identification through the whole pipeline and the CLI."""

from pathlib import Path

import numpy as np
import pytest
import srt
from typer.testing import CliRunner

from hark.cli import app
from hark.config import Settings
from hark.pipeline.audio import SAMPLE_RATE
from hark.pipeline.diarization.base import DiarizationOptions
from hark.pipeline.diarization.identify import VoiceProfile
from hark.pipeline.diarization.select import borrow_diarizer
from hark.pipeline.options import TranscribeOptions
from hark.pipeline.run import transcribe_file
from tests.support.conversations import FIXTURES, Conversation, load_fixture, write_opus

TWO_VOICES = FIXTURES / "two_voices.ogg"


@pytest.fixture(scope="module")
def conversation() -> Conversation:
    return load_fixture("two_voices")


def voice_audio(conversation: Conversation, speaker: str) -> np.ndarray:
    return np.concatenate([
        conversation.audio[int(t.start * SAMPLE_RATE):int(t.end * SAMPLE_RATE)]
        for t in conversation.turns if t.speaker == speaker])


def test_words_and_segments_take_the_speaker_talking(
    settings: Settings, conversation: Conversation
) -> None:
    options = TranscribeOptions(model="pocketsphinx", diarize=True)
    transcript = transcribe_file(TWO_VOICES, options, settings)
    assert [s.id for s in transcript.speakers] == ["SPEAKER_00", "SPEAKER_01"]
    assert "diarize" in transcript.timings
    first_voice = conversation.turns[0].speaker
    # SPEAKER_00 is whoever talks first; map reference voices onto the labels.
    label = {first_voice: "SPEAKER_00",
             next(s for s in conversation.speakers if s != first_voice): "SPEAKER_01"}
    words = [w for s in transcript.segments for w in s.words]
    assert words and all(w.speaker in label.values() for w in words)
    agree = 0
    for word in words:
        middle = (word.start + word.end) / 2
        truth = next((t.speaker for t in conversation.turns if t.start <= middle <= t.end), None)
        agree += truth is not None and label[truth] == word.speaker
    assert agree / len(words) > 0.9
    for segment in transcript.segments:
        assert {w.speaker for w in segment.words} == {segment.speaker}
    talk = {s.id: s.speech_seconds for s in transcript.speakers}
    for voice, name in label.items():
        truth_seconds = sum(t.end - t.start for t in conversation.turns if t.speaker == voice)
        assert talk[name] == pytest.approx(truth_seconds, rel=0.2)


def test_enrolled_voices_are_named_and_strangers_are_not(
    settings: Settings, conversation: Conversation
) -> None:
    first, second = conversation.speakers[0], conversation.speakers[1]
    with borrow_diarizer(settings) as diarizer:
        first_vector = diarizer.embed(voice_audio(conversation, first))
    profiles = [VoiceProfile("p-1", "Ada", first_vector)]
    options = TranscribeOptions(model="pocketsphinx", diarize=True, identify_speakers=True,
                                speakers=DiarizationOptions(num_speakers=2))
    transcript = transcribe_file(TWO_VOICES, options, settings, profiles=profiles)
    named = {s.id: s for s in transcript.speakers}
    first_label = next(s.speaker for s in transcript.segments
                       if s.start <= conversation.turns[0].end)
    assert first_label is not None
    ada = named[first_label]
    assert ada.name == "Ada" and ada.profile_id == "p-1"
    assert ada.similarity is not None and ada.similarity >= settings.speaker_match_threshold
    other = next(s for s in transcript.speakers if s.id != first_label)
    assert other.name is None and other.profile_id is None, f"{second} must stay unknown"
    assert transcript.speaker_label(first_label) == "Ada"


def test_cli_diarize_then_identify(cli_env: Path, tmp_path: Path,
                                   conversation: Conversation) -> None:
    runner = CliRunner()
    out = tmp_path / "out"
    result = runner.invoke(app, ["transcribe", str(TWO_VOICES), "--diarize",
                                 "-f", "txt,srt,rttm", "-o", str(out)])
    assert result.exit_code == 0, result.output
    text = (out / "two_voices.txt").read_text()
    assert text.startswith("SPEAKER_00: ") and "\nSPEAKER_01: " in text
    cues = list(srt.parse((out / "two_voices.srt").read_text()))
    assert {c.content.split("]")[0] for c in cues} == {"[SPEAKER_00", "[SPEAKER_01"}
    rttm = [line.split() for line in (out / "two_voices.rttm").read_text().splitlines()]
    assert {r[7] for r in rttm} == {"SPEAKER_00", "SPEAKER_01"}

    samples = []
    for index, speaker in enumerate(conversation.speakers):
        path = tmp_path / f"voice{index}.ogg"
        write_opus(path, voice_audio(conversation, speaker))
        samples.append(path)
    enrolled = runner.invoke(app, ["speakers", "enroll", "Grace", str(samples[1])])
    assert enrolled.exit_code == 0, enrolled.output
    named = runner.invoke(app, ["transcribe", str(TWO_VOICES), "--identify-speakers",
                                "-f", "txt"])
    assert named.exit_code == 0, named.output
    labels = {line.split(":")[0] for line in named.stdout.splitlines() if ":" in line}
    assert labels == {"Grace", "SPEAKER_00"} or labels == {"Grace", "SPEAKER_01"}


def test_whisper_engine_output_is_diarized_too(settings: Settings, tiny_whisper_dir: Path
                                               ) -> None:
    options = TranscribeOptions(model=str(tiny_whisper_dir), beam_size=1, temperature=0.0,
                                language="en", diarize=True)
    transcript = transcribe_file(TWO_VOICES, options, settings)
    assert transcript.model == "faster-whisper/tiny"
    assert len(transcript.speakers) == 2
    words = [w for s in transcript.segments for w in s.words]
    assert words and all(w.speaker in {"SPEAKER_00", "SPEAKER_01"} for w in words)
    assert all(s.speaker == s.words[0].speaker for s in transcript.segments if s.words)
