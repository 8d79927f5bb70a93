import itertools
from pathlib import Path

import numpy as np
import pytest

from hark.pipeline import silero
from hark.pipeline.audio import SAMPLE_RATE, load_audio
from hark.pipeline.silero import BLOCK_WINDOWS, SileroSettings, speech_regions
from hark.pipeline.vad import (
    Chunk,
    Region,
    SpeechMap,
    VadOptions,
    detect_speech,
    fixed_windows,
    pack_regions,
    speech_chunks,
)


def seconds(a: float, b: float) -> Chunk:
    return Chunk(int(a * SAMPLE_RATE), int(b * SAMPLE_RATE))


def span(a: float, b: float) -> Region:
    return Region(int(a * SAMPLE_RATE), int(b * SAMPLE_RATE))


def test_pack_regions_gathers_speech_and_leaves_the_silence_out() -> None:
    regions = [seconds(0, 4), seconds(5, 9), seconds(10, 14), seconds(20, 22)]
    packed = pack_regions(regions, max_chunk_seconds=10)
    # 4 + 4 s of speech fit in 10 s; a third 4 s region would not.
    assert [(c.start, c.end, c.parts) for c in packed] == [
        (0, 9 * SAMPLE_RATE, (span(0, 4), span(5, 9))),
        (10 * SAMPLE_RATE, 22 * SAMPLE_RATE, (span(10, 14), span(20, 22)))]
    assert packed[0].speech_samples == 8 * SAMPLE_RATE
    # The 6 s pause inside the second chunk is not part of its speech.
    audio = np.arange(22 * SAMPLE_RATE, dtype=np.float32)
    speech = packed[1].speech(audio)
    assert speech.shape[0] == 6 * SAMPLE_RATE
    assert speech[4 * SAMPLE_RATE] == 20 * SAMPLE_RATE


def test_pack_regions_never_exceeds_the_limit() -> None:
    rng = np.random.default_rng(3)
    starts = np.cumsum(rng.uniform(0.2, 3.0, size=200))
    regions = [seconds(s, s + rng.uniform(0.1, 2.0)) for s in starts]
    regions = [r for i, r in enumerate(regions) if i == 0 or r.start >= regions[i - 1].end]
    packed = pack_regions(regions, max_chunk_seconds=8)
    assert all(c.speech_samples <= 8 * SAMPLE_RATE for c in packed)
    # Every region is a part of exactly one chunk, in order.
    assert [p for c in packed for p in c.parts] == [Region(r.start, r.end) for r in regions]


def test_speech_map_takes_speech_times_back_to_the_recording() -> None:
    chunks = pack_regions([seconds(1, 3), seconds(10, 12), seconds(20, 21)], 4)
    speech = SpeechMap(chunks)
    assert speech.samples == 5 * SAMPLE_RATE
    # 0-2 s of speech is 1-3 s; 2-4 s is 10-12 s; 4-5 s is 20-21 s.
    assert speech.to_recording(0.5) == 1.5
    assert speech.to_recording(2.5) == 10.5
    assert speech.to_recording(4.25) == 20.25
    # A time at a join belongs to the part named, so a word keeps both ends in one part.
    assert speech.to_recording(2.0, speech.part_of(1.9)) == 3.0
    assert speech.to_recording(2.0) == 10.0


def test_fixed_windows_cover_every_sample() -> None:
    windows = fixed_windows(SAMPLE_RATE * 65 + 123, 30)
    assert [w.seconds for w in windows[:2]] == [30, 30]
    assert windows[0].start == 0 and windows[-1].end == SAMPLE_RATE * 65 + 123
    assert all(a.end == b.start for a, b in itertools.pairwise(windows))


def test_silence_has_no_speech() -> None:
    silence = np.zeros(SAMPLE_RATE * 10, dtype=np.float32)
    assert speech_chunks(silence, VadOptions(), 30) == []
    noise = np.random.default_rng(0).normal(0, 1e-4, SAMPLE_RATE * 10).astype(np.float32)
    assert speech_chunks(noise, VadOptions(), 30) == []


def test_vad_off_returns_the_whole_recording() -> None:
    audio = np.zeros(SAMPLE_RATE * 40, dtype=np.float32)
    chunks = speech_chunks(audio, None, 30)
    assert chunks == [Chunk(0, SAMPLE_RATE * 30), Chunk(SAMPLE_RATE * 30, SAMPLE_RATE * 40)]


@pytest.mark.corpus
def test_real_speech_with_pauses_is_split_into_bounded_chunks(corpus_dir: Path) -> None:
    # Ten Harvard sentences with pauses between them, 35.5 s in all.
    _, audio = load_audio(corpus_dir / "asr" / "osr_us_000_0034_8k.wav")
    chunks = speech_chunks(audio, VadOptions(max_chunk_seconds=5), 30)
    assert 8 <= len(chunks) <= 14
    # Packed chunks hold at most 5 s of speech; the pauses left out between parts do not count.
    assert all(0.5 < c.speech_samples / SAMPLE_RATE <= 5.0 for c in chunks)
    assert all(a.end <= b.start for a, b in itertools.pairwise(chunks))
    speech = sum(c.seconds for c in chunks)
    assert 15 < speech < 34, "pauses between sentences must be skipped"
    # Longer chunks allowed: fewer, and still bounded.
    long_chunks = speech_chunks(audio, VadOptions(), 30)
    assert len(long_chunks) < len(chunks)
    assert all(c.speech_samples <= 30 * SAMPLE_RATE for c in long_chunks)


@pytest.mark.corpus
def test_threshold_changes_what_counts_as_speech(corpus_dir: Path) -> None:
    _, audio = load_audio(corpus_dir / "asr" / "pyannote_sample.wav")
    lenient = speech_chunks(audio, VadOptions(threshold=0.2, max_chunk_seconds=5), 30)
    strict = speech_chunks(audio, VadOptions(threshold=0.9, max_chunk_seconds=5), 30)
    assert sum(c.seconds for c in lenient) > sum(c.seconds for c in strict)
    # The conversation starts at ~6.7 s; before it there is only line noise.
    assert speech_chunks(audio, VadOptions(), 30)[0].start_s > 5.5


class Zeros:
    """A recording of digital silence of any length that holds no memory."""

    def __init__(self, samples: int) -> None:
        self.shape = (samples,)

    def __getitem__(self, span: slice) -> np.ndarray:
        start, stop, _ = span.indices(self.shape[0])
        return np.zeros(max(0, stop - start), dtype=np.float32)


class Spliced(Zeros):
    """Digital silence with `clip` placed at sample `at`."""

    def __init__(self, samples: int, clip: np.ndarray, at: int) -> None:
        super().__init__(samples)
        self.clip, self.at = clip, at

    def __getitem__(self, span: slice) -> np.ndarray:
        start, stop, _ = span.indices(self.shape[0])
        out = super().__getitem__(span)
        a, b = max(start, self.at), min(stop, self.at + self.clip.size)
        if a < b:
            out[a - start:b - start] = self.clip[a - self.at:b - self.at]
        return out


@pytest.fixture(scope="module")
def conversation(corpus_dir: Path) -> np.ndarray:
    """About 80 s of speech, pauses and line noise: several blocks of 997 or 64 windows."""
    names = ["pyannote_sample.wav", "osr_us_000_0034_8k.wav", "jfk_inaugural_1961.flac"]
    return np.concatenate([load_audio(corpus_dir / "asr" / name)[1] for name in names])


@pytest.mark.corpus
@pytest.mark.parametrize("max_seconds", [30.0, 4.0])
def test_regions_are_faster_whispers_wherever_the_blocks_fall(
    conversation: np.ndarray, max_seconds: float,
) -> None:
    from faster_whisper.vad import VadOptions as FasterWhisperVad
    from faster_whisper.vad import get_speech_timestamps

    options = VadOptions(min_silence_ms=300, speech_pad_ms=100)
    settings = SileroSettings(threshold=options.threshold, min_silence_ms=300,
                              speech_pad_ms=100, max_speech_seconds=max_seconds)
    # Ending on a whole window makes faster-whisper score one window of padding.
    for audio in (conversation, conversation[: conversation.size // 512 * 512]):
        expected = [(r["start"], r["end"]) for r in get_speech_timestamps(
            audio, FasterWhisperVad(threshold=0.5, min_silence_duration_ms=300,
                                    speech_pad_ms=100, max_speech_duration_s=max_seconds))]
        assert len(expected) >= 8
        for block_windows in (BLOCK_WINDOWS, 997, 64):
            assert speech_regions(audio, settings, block_windows) == expected
    regions = detect_speech(conversation, options, max_seconds)
    assert [(r.start, r.end) for r in regions] == speech_regions(conversation, settings)


def test_hours_of_digital_silence_are_skipped_quickly(monkeypatch: pytest.MonkeyPatch) -> None:
    # Silero itself would take minutes: it is never run on digital silence.
    scored: list[int] = []
    score = silero.SileroScorer.__call__

    def counting(scorer: silero.SileroScorer, samples: np.ndarray) -> np.ndarray:
        scored.append(samples.size)
        return score(scorer, samples)

    monkeypatch.setattr(silero.SileroScorer, "__call__", counting)
    progress: list[float] = []
    assert detect_speech(Zeros(SAMPLE_RATE * 4 * 3600), VadOptions(), 30,
                         progress.append) == []
    assert scored == []
    blocks = -(-(SAMPLE_RATE * 4 * 3600 + 512) // (BLOCK_WINDOWS * 512))
    assert progress == sorted(progress) and progress[-1] == 1.0 and len(progress) == blocks


@pytest.mark.corpus
def test_after_skipped_silence_silero_starts_afresh(corpus_dir: Path) -> None:
    from faster_whisper.vad import VadOptions as FasterWhisperVad
    from faster_whisper.vad import get_speech_timestamps

    _, clip = load_audio(corpus_dir / "asr" / "jfk_inaugural_1961.flac")
    block = BLOCK_WINDOWS * 512
    at = SAMPLE_RATE * 1000  # whole blocks of silence, then some more before the speech
    spliced = Spliced(at + clip.size + SAMPLE_RATE * 700, clip, at)
    found = speech_regions(spliced, SileroSettings(min_silence_ms=500, speech_pad_ms=200))
    # As if the recording began at the first block that is not silent.
    first = at // block * block
    tail = spliced[first:first + block]
    expected = [(r["start"] + first, r["end"] + first) for r in get_speech_timestamps(
        tail, FasterWhisperVad(threshold=0.5, min_silence_duration_ms=500, speech_pad_ms=200))]
    assert len(expected) >= 3
    assert found == expected
    assert at <= found[0][0] and found[-1][1] <= at + clip.size
