"""The live engine on real speech with real Whisper (tiny.en from its package): audio fed
in chunks of random sizes, as a socket would deliver it."""

from __future__ import annotations

import base64
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
import soxr

from hark.config import Settings
from hark.evaluation.asr import ManifestItem, read_manifest
from hark.evaluation.scoring import count_errors, total
from hark.live.realtime import RealtimeSession
from hark.pipeline.audio import SAMPLE_RATE, load_audio
from hark.pipeline.engines.base import Engine, Recognition
from hark.pipeline.engines.select import borrow_engine, engine_cache
from hark.pipeline.live import LiveEvent, LiveOptions, LiveTranscriber
from hark.pipeline.options import TranscribeOptions
from hark.pipeline.run import transcribe_audio
from hark.pipeline.transcript import Segment, Word

pytestmark = [pytest.mark.corpus, pytest.mark.slow]

ENGLISH = TranscribeOptions(model="tiny.en", language="en")


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    settings = Settings(_env_file=None, data_dir=tmp_path_factory.mktemp("live"),
                        model_packages=True)
    yield settings
    engine_cache(settings).clear()


@pytest.fixture(scope="module")
def engine(settings: Settings) -> Iterator[Engine]:
    with borrow_engine(ENGLISH.model or "", settings) as engine:
        yield engine


@pytest.fixture(scope="module")
def items(corpus_dir: Path) -> dict[str, ManifestItem]:
    return {i.id: i for i in read_manifest(corpus_dir / "asr" / "manifest.jsonl", {"en"})}


def samples_of(item: ManifestItem) -> np.ndarray:
    return load_audio(item.audio)[1]


def stream(transcriber: LiveTranscriber, audio: np.ndarray, seed: int,
           largest: int = 8000) -> tuple[list[LiveEvent], float]:
    """Feed `audio` in random pieces (1 sample to `largest`); the events, and the most
    audio the transcriber held at once (seconds)."""
    rng = np.random.default_rng(seed)
    events: list[LiveEvent] = []
    held = 0.0
    position = 0
    while position < audio.shape[0]:
        size = int(rng.integers(1, largest + 1))
        events += transcriber.feed(audio[position:position + size])
        held = max(held, transcriber.buffered_seconds)
        position += size
    return events + transcriber.finish(), held


def final_text(events: list[LiveEvent]) -> str:
    return " ".join(e.segment.text for e in events if e.kind == "final" and e.segment)


def check_order(events: list[LiveEvent], duration: float) -> None:
    """Finals come inside speech, in time order, with words in order inside the stream."""
    finals = [e.segment for e in events if e.kind == "final" and e.segment]
    words = [w for s in finals for w in s.words]
    assert words, "no final words"
    assert all(a.start <= b.start for a, b in itertools.pairwise(words))
    assert all(0 <= w.start <= w.end <= duration + 0.05 for w in words)
    assert [s.id for s in finals] == list(range(len(finals)))
    kinds = [e.kind for e in events if e.kind in ("speech_started", "speech_stopped")]
    assert kinds == ["speech_started", "speech_stopped"] * (len(kinds) // 2)
    assert kinds, "no speech found"
    # Event times never go back.
    times = [e.time for e in events]
    assert times == sorted(times)


def test_a_speech_streamed_in_random_pieces(engine: Engine, settings: Settings,
                                            items: dict[str, ManifestItem]) -> None:
    item = items["jfk_inaugural_1961"]
    audio = samples_of(item)
    offline = transcribe_audio(audio, ENGLISH, settings)
    offline_errors = count_errors(item.text, offline.text, "en")
    transcriber = LiveTranscriber(engine, ENGLISH)
    events, _ = stream(transcriber, audio, seed=1)
    check_order(events, audio.shape[0] / SAMPLE_RATE)
    live_errors = count_errors(item.text, final_text(events), "en")
    # Live decoding hears each phrase before the next one is spoken (the first phrase with
    # no context at all), so it may lose a word or two of this 22-word speech; the corpus
    # figure is in docs/benchmarks.md (benchmarks/live.py).
    assert live_errors.rate <= offline_errors.rate + 0.1, (final_text(events), offline.text)
    partials = [e for e in events if e.kind == "partial"]
    assert partials, "no partial before the finals"
    first_final = next(i for i, e in enumerate(events) if e.kind == "final")
    assert any(e.kind == "partial" for e in events[:first_final])


def test_utterances_apart_are_given_out_one_by_one(engine: Engine,
                                                    items: dict[str, ManifestItem]) -> None:
    """Three readers with pauses between them: three utterances, each final before the
    next one starts, and the text right."""
    chosen = [items[i] for i in ("librispeech_1272-128104-0000", "ljspeech_LJ001-0002",
                                 "librispeech_3752-4944-0001")]
    pause = np.zeros(int(1.5 * SAMPLE_RATE), np.float32)
    audio = np.concatenate([part for item in chosen for part in (samples_of(item), pause)])
    events, _ = stream(LiveTranscriber(engine, ENGLISH), audio, seed=3)
    check_order(events, audio.shape[0] / SAMPLE_RATE)
    starts = [i for i, e in enumerate(events) if e.kind == "speech_started"]
    assert len(starts) == 3, [(e.kind, e.time) for e in events]
    for begin, end in zip(starts, [*starts[1:], len(events)], strict=True):
        assert any(e.kind == "final" for e in events[begin:end])
    reference = " ".join(i.text for i in chosen)
    assert count_errors(reference, final_text(events), "en").rate <= 0.15, final_text(events)


def test_long_speech_without_a_pause_is_given_out_as_it_goes(
        engine: Engine, items: dict[str, ManifestItem]) -> None:
    """Five sentences read back to back (about 40 s, no pause long enough to end the
    utterance): finals come while the speech goes on, and the audio held stays bounded."""
    chosen = [items[f"ljspeech_LJ001-000{n}"] for n in range(1, 6)]
    audio = np.concatenate([samples_of(item) for item in chosen])
    live = LiveOptions(max_buffer_seconds=12.0)
    events, held = stream(LiveTranscriber(engine, ENGLISH, live), audio, seed=4)
    check_order(events, audio.shape[0] / SAMPLE_RATE)
    assert held <= live.max_buffer_seconds + 2 * live.decode_every + 1.0, held
    stops = [e.time for e in events if e.kind == "speech_stopped"]
    finals = [e for e in events if e.kind == "final"]
    assert sum(e.time < stops[0] for e in finals) >= 2
    reference = " ".join(i.text for i in chosen)
    errors = total([count_errors(reference, final_text(events), "en")])
    assert errors.rate <= 0.15, final_text(events)


def test_silence_and_noise_give_nothing(engine: Engine) -> None:
    rng = np.random.default_rng(5)
    audio = np.concatenate([np.zeros(SAMPLE_RATE * 3, np.float32),
                            rng.normal(0, 0.003, SAMPLE_RATE * 5).astype(np.float32)])
    transcriber = LiveTranscriber(engine, ENGLISH)
    events, held = stream(transcriber, audio, seed=6)
    assert events == [] and held == 0.0
    assert transcriber.received == audio.shape[0] // 512 * 512


class BreaksOnce:
    """The real engine, except that its first recognition raises (a decoder crash)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    def recognize(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("the decoder crashed")
        return self._engine.recognize(*args, **kwargs)


class LoopsOnce:
    """The real engine, except that its first recognitions of speech answer what a
    decoder caught in a loop answers: runs of "." and one word over and over. Later
    calls, and the prompts they are given, are the real ones."""

    def __init__(self, engine: Engine, times: int = 2) -> None:
        self._engine = engine
        self.left = times
        self.prompts: list[str | None] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    def recognize(self, audio: np.ndarray, chunks: Any, options: TranscribeOptions) -> Any:
        self.prompts.append(options.initial_prompt)
        if self.left == 0:
            return self._engine.recognize(audio, chunks, options)
        self.left -= 1
        end = audio.shape[0] / SAMPLE_RATE
        junk = [Word(".", end * i / 60, end * (i + 1) / 60) for i in range(30)] + \
            [Word("the", end * (30 + i) / 60, end * (31 + i) / 60) for i in range(30)]
        segment = Segment(id=0, start=0.0, end=end, text=" ".join(w.word for w in junk),
                          words=junk)
        return Recognition(language="en", language_probability=1.0, segments=iter([segment]))


def test_a_decoder_caught_in_a_loop_gives_nothing_out_and_does_not_poison_the_rest(
        engine: Engine, items: dict[str, ManifestItem]) -> None:
    """Seen on a 60-minute stream: a run of "." given out as finals became the prompt,
    and the decoder answered every later phrase with more of them."""
    chosen = [items[i] for i in ("librispeech_1272-128104-0000", "ljspeech_LJ001-0002")]
    pause = np.zeros(int(1.5 * SAMPLE_RATE), np.float32)
    audio = np.concatenate([part for item in chosen for part in (samples_of(item), pause)])
    looping = LoopsOnce(engine)
    events, _ = stream(LiveTranscriber(cast(Engine, looping), ENGLISH), audio, seed=8)
    assert looping.left == 0  # the loop did happen
    text = final_text(events)
    assert "." not in text.split() and "the the the" not in text.lower(), text
    # No prompt ever carried the loop on.
    assert not any(p and ". ." in p for p in looping.prompts), looping.prompts
    # The second reader, after the loop, is heard as well as ever.
    second = [e for e in events if e.kind == "final" and e.segment
              and e.segment.start >= samples_of(chosen[0]).shape[0] / SAMPLE_RATE]
    heard = " ".join(e.segment.text for e in second if e.segment)
    assert count_errors(chosen[1].text, heard, "en").rate <= 0.15, heard


def test_a_realtime_item_whose_recognition_breaks_fails_and_the_session_goes_on(
        engine: Engine, items: dict[str, ManifestItem]) -> None:
    broken = BreaksOnce(engine)
    session = RealtimeSession(lambda model, language: cast(Engine, broken), 1 << 20)
    audio = soxr.resample(samples_of(items["jfk_inaugural_1961"]), SAMPLE_RATE, 24000)
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    events: list[dict[str, Any]] = []
    for start in range(0, len(pcm), 4800):
        events += session.handle({"type": "input_audio_buffer.append",
                                  "audio": base64.b64encode(pcm[start:start + 4800]).decode()})
    events += session.handle({"type": "input_audio_buffer.commit"})
    failed = [e for e in events
              if e["type"] == "conversation.item.input_audio_transcription.failed"]
    completed = [e for e in events
                 if e["type"] == "conversation.item.input_audio_transcription.completed"]
    assert broken.calls > 1 and len(failed) == 1
    assert failed[0]["error"]["code"] == "recognition_failed"
    # The failed item gets nothing more; the speech after it is transcribed.
    assert failed[0]["item_id"] not in {e.get("item_id") for e in completed}
    assert "your country" in " ".join(e["transcript"] for e in completed).lower()
    assert not [e for e in events if e["type"] == "error"]
