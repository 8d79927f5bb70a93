"""Compressed live streams decoded as they arrive: every container a client may send,
in frames of any size, and hostile streams refused without reading anything else."""

from __future__ import annotations

import threading
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from hark.errors import NoAudioStreamError, UnsupportedMediaError
from hark.pipeline.audio import SAMPLE_RATE
from hark.pipeline.stream_media import ContainerStreamDecoder
from tests.support.encode import FORMATS, encode, video_only_webm

SECONDS = 6
BLOCK = SAMPLE_RATE // 4


@pytest.fixture(scope="module")
def signal() -> np.ndarray:
    """Noise whose loudness changes every quarter second: its envelope is its identity."""
    rng = np.random.default_rng(4)
    levels = rng.uniform(0.01, 0.4, SECONDS * 4)
    return (rng.normal(0, 1, SECONDS * SAMPLE_RATE) * np.repeat(levels, BLOCK)
            ).clip(-1, 1).astype(np.float32)


def envelope(samples: np.ndarray) -> np.ndarray:
    blocks = samples[:samples.shape[0] // BLOCK * BLOCK].reshape(-1, BLOCK)
    rms: np.ndarray = np.sqrt((blocks ** 2).mean(axis=1))
    return rms


def decoder_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "hark-stream-decode"]


@pytest.mark.parametrize("container", sorted(FORMATS))
def test_each_container_decodes_as_it_arrives(container: str, signal: np.ndarray) -> None:
    data = encode(signal, container)
    rng = np.random.default_rng(len(container))
    decoder = ContainerStreamDecoder()
    pieces: list[np.ndarray] = []
    sent = 0
    out_at_half = None
    while sent < len(data):
        size = int(rng.integers(100, 4000))
        pieces += list(decoder.pieces(data[sent:sent + size]))
        sent += size
        if out_at_half is None and sent >= len(data) / 2:
            out_at_half = sum(p.shape[0] for p in pieces) / SAMPLE_RATE
    pieces += list(decoder.pieces(b"", last=True))
    decoder.close()
    decoded = np.concatenate(pieces)
    assert all(p.dtype == np.float32 and p.ndim == 1 for p in pieces)
    assert abs(decoded.shape[0] / SAMPLE_RATE - SECONDS) < 0.1
    # Audio comes out while the stream goes on, behind the bytes by at most what one
    # container page holds (an Ogg page here holds about a second).
    assert out_at_half is not None and out_at_half > SECONDS * 0.5 - 1.5
    correlation = np.corrcoef(envelope(decoded)[:SECONDS * 4], envelope(signal))[0, 1]
    assert correlation > 0.95
    assert decoder_threads() == []


@pytest.mark.parametrize("data", [b"hello there, this is not audio" * 40,
                                  bytes(range(256)) * 64])
def test_what_is_not_audio_is_refused(data: bytes) -> None:
    decoder = ContainerStreamDecoder()
    with pytest.raises(UnsupportedMediaError):
        for start in range(0, len(data), 1000):
            list(decoder.pieces(data[start:start + 1000]))
        list(decoder.pieces(b"", last=True))
    decoder.close()
    assert decoder_threads() == []


def test_playlists_cannot_make_it_read_files(tmp_path: Path, signal: np.ndarray) -> None:
    local = tmp_path / "secret.flac"
    local.write_bytes(encode(signal, "flac"))
    for stream in (
        f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n{local}\n#EXT-X-ENDLIST\n",
        f"#EXTM3U\n#EXTINF:10,\nfile:{local}\n#EXT-X-ENDLIST\n",
        f"ffconcat version 1.0\nfile '{local}'\n",
    ):
        decoder = ContainerStreamDecoder()
        with pytest.raises(UnsupportedMediaError):
            list(decoder.pieces(stream.encode()))
            list(decoder.pieces(b"", last=True))
        decoder.close()


def test_a_stream_without_audio_says_so() -> None:
    decoder = ContainerStreamDecoder()
    with pytest.raises(NoAudioStreamError):
        list(decoder.pieces(video_only_webm(), last=True))
    decoder.close()


def test_hours_in_a_small_frame_come_out_in_bounded_pieces() -> None:
    # Ten minutes of silence compress to a few kilobytes: one frame may hold them all.
    silence = encode(np.zeros(600 * SAMPLE_RATE, np.float32), "flac")
    assert len(silence) < 200_000
    decoder = ContainerStreamDecoder()
    tracemalloc.start()
    total = 0
    try:
        for piece in decoder.pieces(silence, last=True):
            total += piece.shape[0]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    decoder.close()
    assert abs(total / SAMPLE_RATE - 600) < 1
    # 38 MB of samples passed through; never more than a few seconds of them at once.
    assert peak < 8_000_000, peak


def test_a_stream_left_mid_way_stops_its_decoder(signal: np.ndarray) -> None:
    data = encode(signal, "webm")
    decoder = ContainerStreamDecoder()
    assert sum(p.shape[0] for p in decoder.pieces(data[:len(data) // 2])) > 0
    decoder.close()
    assert decoder_threads() == []
    # A caller that stops taking pieces half way through a long frame, too.
    decoder = ContainerStreamDecoder()
    pieces = decoder.pieces(encode(np.zeros(120 * SAMPLE_RATE, np.float32), "flac"))
    next(pieces)
    decoder.close()
    assert decoder_threads() == []
