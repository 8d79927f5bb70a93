import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from hark.config import Settings
from hark.errors import UnsupportedLanguageError
from hark.evaluation.scoring import count_errors
from hark.pipeline.audio import load_audio
from hark.pipeline.engines.pocketsphinx import PocketsphinxEngine, to_pcm16
from hark.pipeline.options import TranscribeOptions
from hark.pipeline.run import transcribe_audio, transcribe_file
from hark.pipeline.samples import PCM16_SCALE
from hark.pipeline.vad import VadOptions, speech_chunks


@pytest.fixture(scope="module")
def engine() -> Iterator[PocketsphinxEngine]:
    engine = PocketsphinxEngine(processes=2)
    yield engine
    engine.close()


def test_refuses_other_languages_and_translation(engine: PocketsphinxEngine) -> None:
    with pytest.raises(UnsupportedLanguageError) as info:
        engine.check(TranscribeOptions(language="de"))
    assert info.value.details["field"] == "language"
    with pytest.raises(UnsupportedLanguageError):
        engine.check(TranscribeOptions(task="translate"))
    engine.check(TranscribeOptions(language="en"))


def test_non_english_request_fails_before_decoding(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hark.cli.transcribe import sample_path
    from hark.pipeline import run

    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("audio was decoded before the language was checked")

    monkeypatch.setattr(run, "decode_to_store", no_decoding)
    with pytest.raises(UnsupportedLanguageError) as info:
        transcribe_file(sample_path(), TranscribeOptions(model="pocketsphinx", language="fr"),
                        settings)
    assert info.value.details["field"] == "language"


@pytest.mark.corpus
def test_words_have_times_and_confidences(engine: PocketsphinxEngine, corpus_dir: Path) -> None:
    _, audio = load_audio(corpus_dir / "asr" / "osr_us_000_0034_8k.wav")
    chunks = speech_chunks(audio, VadOptions(), engine.chunk_seconds, pack=False)
    recognition = engine.recognize(audio, chunks, TranscribeOptions())
    segments = list(recognition.segments)
    assert recognition.language == "en" and recognition.language_probability is None
    assert len(segments) >= 3
    words = [w for s in segments for w in s.words]
    assert len(words) > 40
    for segment in segments:
        assert segment.avg_logprob is None and segment.no_speech_prob is None
        assert segment.start == segment.words[0].start and segment.end == segment.words[-1].end
        assert segment.text == " ".join(w.word for w in segment.words)
    for a, b in itertools.pairwise(words):
        assert a.start < a.end <= b.start + 1e-6
    assert all(w.probability is not None and 0.0 <= w.probability <= 1.0 for w in words)
    assert len({w.probability for w in words}) > 5, "confidences must vary per word"
    assert not any("(" in w.word or w.word.startswith(("<", "[")) for w in words)
    # Times are absolute: the 35.5 s recording's last words sit near its end.
    assert 28 < words[-1].end <= 35.6
    text = " ".join(s.text for s in segments)
    reference = ("A gold ring will please most any girl. The long journey home took a year. "
                 "She saw a cat in the neighbor's house. A pink shell was found on the sandy "
                 "beach. Small children came to see him. The grass and bushes were wet with "
                 "dew. The blind man counted his old coins. A severe storm tore down the barn. "
                 "She called his name many times. When you hear the bell, come quickly.")
    assert count_errors(reference, text, "en").rate < 0.5


@pytest.mark.corpus
def test_parallel_decoding_matches_one_process(corpus_dir: Path, settings: Settings) -> None:
    _, audio = load_audio(corpus_dir / "asr" / "mfa_acoustic_corpus.wav")
    chunks = speech_chunks(audio, VadOptions(), 15.0, pack=False)
    assert len(chunks) >= 2, "needs several chunks to exercise the pool"
    single = PocketsphinxEngine(processes=1)
    try:
        one = list(single.recognize(audio, chunks, TranscribeOptions()).segments)
    finally:
        single.close()
    double = PocketsphinxEngine(processes=2)
    try:
        two = list(double.recognize(audio, chunks, TranscribeOptions()).segments)
    finally:
        double.close()
    assert [s.text for s in one] == [s.text for s in two]
    assert [w.start for s in one for w in s.words] == [w.start for s in two for w in s.words]


def test_silence_gives_an_empty_transcript(settings: Settings) -> None:
    transcript = transcribe_audio(np.zeros(16000 * 5, dtype=np.float32),
                                  TranscribeOptions(model="pocketsphinx"), settings)
    assert transcript.segments == [] and transcript.text == ""
    assert transcript.model == "pocketsphinx/en-us"
    assert transcript.duration == 5.0


def test_decoded_samples_reach_the_recogniser_as_their_own_integers() -> None:
    """16-bit audio decodes to value / 32768; the recogniser must get back each original value."""
    original = np.array([-32768, -32767, -3, -1, 0, 1, 2, 3, 12345, 32767], dtype="<i2")
    samples = (original.astype(np.float32) / PCM16_SCALE).astype(np.float32)
    assert np.array_equal(np.frombuffer(to_pcm16(samples), dtype="<i2"), original)
    # Out-of-range floats saturate instead of wrapping around.
    clipped = np.frombuffer(to_pcm16(np.array([1.5, -1.5], dtype=np.float32)), dtype="<i2")
    assert clipped.tolist() == [32767, -32768]
