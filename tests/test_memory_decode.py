"""Decoding whatever a file claims without memory growing with the claim.

Leading ID3v2 tags too large to be cover art are skipped rather than read, files
sampled far below any speech codec are refused, and decoded samples go to a
disk-backed store that reads back any span exactly.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import av
import numpy as np
import pytest

from hark.errors import (
    AudioTooLongError,
    CanceledError,
    CorruptMediaError,
    UnsupportedMediaError,
)
from hark.pipeline.audio import SAMPLE_RATE, decode, decode_to_store, probe
from hark.pipeline.media import MIN_SAMPLE_RATE
from hark.pipeline.media_files import MAX_READ_TAG_BYTES, leading_tag_bytes
from hark.pipeline.samples import SampleStore


def write_mp3(path: Path, seconds: float = 3.0) -> Path:
    t = np.arange(int(SAMPLE_RATE * seconds)) / SAMPLE_RATE
    pcm = (np.sin(2 * np.pi * 440 * t) * 0.3 * 32767).astype(np.int16)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libmp3lame", rate=SAMPLE_RATE, layout="mono")
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def syncsafe(size: int) -> bytes:
    return bytes((size >> shift) & 0x7F for shift in (21, 14, 7, 0))


def id3_text_tag(body_bytes: int) -> bytes:
    """An ID3v2.4 tag holding one TXXX text frame that fills `body_bytes`."""
    frame_body = body_bytes - 10
    head = b"\x03"  # UTF-8
    return (b"ID3\x04\x00\x00" + syncsafe(body_bytes) + b"TXXX" + syncsafe(frame_body)
            + b"\x00\x00" + head + b"a" * (frame_body - len(head)))


def write_wav(path: Path, rate: int, samples: int) -> Path:
    data = np.zeros(samples, dtype="<i2").tobytes()
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    path.write_bytes(b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE"
                     + b"fmt " + struct.pack("<I", 16) + fmt
                     + b"data" + struct.pack("<I", len(data)) + data)
    return path


def test_oversized_leading_tags_are_skipped_and_the_audio_still_decodes(tmp_path: Path) -> None:
    plain = write_mp3(tmp_path / "plain.mp3")
    # Two tags back to back, together over the limit: both are skipped.
    tags = id3_text_tag(1 << 20) + id3_text_tag(MAX_READ_TAG_BYTES)
    tagged = tmp_path / "tagged.mp3"
    tagged.write_bytes(tags + plain.read_bytes())
    # The encoder wrote a small tag of its own, which comes after these.
    own = leading_tag_bytes(plain)
    assert 0 < own < 1024
    assert leading_tag_bytes(tagged) == len(tags) + own > MAX_READ_TAG_BYTES
    info = probe(tagged)
    assert info.duration == pytest.approx(probe(plain).duration, abs=0.05)
    assert info.duration_source == probe(plain).duration_source
    assert info.size_bytes == tagged.stat().st_size
    assert np.array_equal(decode(tagged), decode(plain))


def test_cover_art_sized_tags_are_read_as_usual(tmp_path: Path) -> None:
    plain = write_mp3(tmp_path / "plain.mp3")
    tagged = tmp_path / "cover.mp3"
    tagged.write_bytes(id3_text_tag(256 << 10) + plain.read_bytes())
    own = leading_tag_bytes(plain)
    assert leading_tag_bytes(tagged) == (256 << 10) + 10 + own <= MAX_READ_TAG_BYTES
    assert probe(tagged).duration == pytest.approx(probe(plain).duration, abs=0.05)
    assert np.array_equal(decode(tagged), decode(plain))
    not_a_tag = tmp_path / "id3-lookalike.mp3"
    not_a_tag.write_bytes(b"ID3\x04\x00\x00\xff\xff\xff\xff" + plain.read_bytes())
    assert leading_tag_bytes(not_a_tag) == 0  # size bytes must be 7-bit


def test_a_tag_that_is_the_whole_file_is_not_audio(tmp_path: Path) -> None:
    path = tmp_path / "only-a-tag.mp3"
    path.write_bytes(id3_text_tag(MAX_READ_TAG_BYTES + 1024))
    with pytest.raises(CorruptMediaError) as info:
        probe(path)
    assert "looks like a media file" in info.value.message


def test_a_sample_rate_far_below_speech_is_unsupported(tmp_path: Path) -> None:
    # 27 KB declaring 13,800 s: at 16 kHz that would be 220 million samples.
    path = write_wav(tmp_path / "one-hertz.wav", rate=1, samples=13_800)
    with pytest.raises(UnsupportedMediaError) as info:
        probe(path)
    assert info.value.details["reason"] == "sample_rate"
    assert info.value.details["sample_rate"] == 1
    assert "1 Hz" in info.value.message
    lowest = write_wav(tmp_path / "lowest.wav", rate=MIN_SAMPLE_RATE, samples=MIN_SAMPLE_RATE)
    assert probe(lowest).duration == pytest.approx(1.0)
    assert decode(lowest).size == SAMPLE_RATE


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("name", ["jfk_inaugural_1961.flac", "librivox_shakespeare_sonnet_001.mp3",
                                  "mls_es_13697_11991_000000.opus"])
@pytest.mark.corpus
def test_the_store_reads_back_exactly_what_decode_returns(corpus_dir: Path, name: str) -> None:
    path = corpus_dir / "asr" / name
    info = probe(path)
    whole = decode(path, info=info)
    steps: list[float] = []
    with decode_to_store(path, info, progress=steps.append) as store:
        n = whole.size
        assert store.shape == (n,) and store.size == len(store) == n
        assert store.dtype == np.float32
        assert np.array_equal(store[0:n], whole)
        for span in (slice(0, 1), slice(12345, 54321), slice(n - 7, n + 100), slice(-500, None),
                     slice(n + 5, n + 9), slice(9, 3)):
            assert np.array_equal(store[span], whole[span])
            assert store[span].dtype == np.float32
        assert np.array_equal(np.asarray(store), whole)
        with pytest.raises(TypeError):
            store[::2]
    assert steps == sorted(steps) and 5 <= len(steps) <= 25


def test_the_store_file_is_gone_when_closed_even_after_a_failure(tmp_path: Path) -> None:
    before = open_fds()
    with SampleStore(tmp_path) as store:
        store.append(np.array([1.0, -32768.0, 32767.0], dtype=np.float32))
        assert np.array_equal(store[0:3] * 32768, [1.0, -32768.0, 32767.0])
        store.truncate(2)
        assert store.shape == (2,)
        assert open_fds() == before + 1
        assert list(tmp_path.iterdir()) == []  # no name in the file system at any time
    assert store.closed and open_fds() == before

    path = write_mp3(tmp_path / "speech.mp3", seconds=30.0)
    info = probe(path)

    def cancel(fraction: float) -> None:
        raise CanceledError("canceled while decoding")

    with pytest.raises(CanceledError):
        decode_to_store(path, info, progress=cancel, directory=tmp_path)
    # A WAV's length is size / byte rate, an estimate: the limit is enforced while decoding.
    wav = write_wav(tmp_path / "long.wav", rate=16000, samples=16000 * 10)
    assert probe(wav).duration_source == "estimated"
    with pytest.raises(AudioTooLongError):
        decode_to_store(wav, probe(wav), max_seconds=2.0, directory=tmp_path)
    assert open_fds() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.wav", "speech.mp3"]
