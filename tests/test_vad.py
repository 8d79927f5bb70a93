import itertools
from pathlib import Path

import numpy as np
import pytest

from hark.pipeline.audio import SAMPLE_RATE, load_audio
from hark.pipeline.vad import (
    Chunk,
    Region,
    SpeechMap,
    VadOptions,
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
    assert all(0.5 < c.seconds <= 5.0 for c in chunks)
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
