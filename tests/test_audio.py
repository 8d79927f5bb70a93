"""Probing and decoding media into 16 kHz mono float32.

Every input is generated here with PyAV from a known signal, so the checks can
compare against exact lengths, levels and frequencies.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import wave
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt
import pytest
from av.audio.stream import AudioStream
from av.video.stream import VideoStream

from hark.errors import (
    AudioTooLongError,
    CorruptMediaError,
    EmptyMediaError,
    MediaError,
    MediaNotFoundError,
    NoAudioStreamError,
    OptionError,
    UnsupportedMediaError,
)
from hark.pipeline import audio
from hark.pipeline.audio import SAMPLE_RATE, MediaInfo, decode, load_audio, probe

Signal = npt.NDArray[np.float32]

TONE_HZ = 440.0


def tone(seconds: float, rate: int, channels: int = 1, amplitude: float = 0.5) -> Signal:
    t = np.arange(round(seconds * rate)) / rate
    sine = (amplitude * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.float32)
    return np.tile(sine, (channels, 1))


def write_media(
    path: Path,
    codec: str,
    *,
    rate: int = 16000,
    layout: str = "mono",
    seconds: float = 2.0,
    amplitude: float = 0.5,
    sample_format: str | None = None,
    video: str | None = None,
    signal: Signal | None = None,
    muxer_options: dict[str, str] | None = None,
    vbr: bool = False,
) -> Path:
    """Encode `signal` (default: a 440 Hz tone) as an audio track after an optional video track."""
    channels = av.AudioLayout(layout).nb_channels
    data = tone(seconds, rate, channels, amplitude) if signal is None else signal
    with av.open(str(path), "w", options=muxer_options or {}) as out:
        video_stream: VideoStream | None = None
        if video is not None:
            added = out.add_stream(video, rate=4)
            assert isinstance(added, VideoStream)
            video_stream = added
            video_stream.width = 64
            video_stream.height = 64
            video_stream.pix_fmt = "yuv420p"
        # FFmpeg's own Vorbis encoder is flagged experimental.
        options = {"strict": "experimental"} if codec == "vorbis" else None
        stream = out.add_stream(codec, rate=rate, layout=layout, options=options)
        assert isinstance(stream, AudioStream)
        if sample_format is not None:
            stream.format = sample_format
        if vbr:
            stream.codec_context.qscale = True
        for start in range(0, data.shape[1], 1024):
            chunk = np.ascontiguousarray(data[:, start : start + 1024])
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
            frame.sample_rate = rate
            frame.pts = start
            frame.time_base = Fraction(1, rate)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
        if video_stream is not None:
            for index in range(math.ceil(seconds * 4)):
                image = np.full((64, 64, 3), index * 40 % 256, dtype=np.uint8)
                picture = av.VideoFrame.from_ndarray(image, format="rgb24")
                picture.pts = index
                out.mux(video_stream.encode(picture))
            out.mux(video_stream.encode(None))
    return path


def write_video_only(path: Path) -> Path:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=4)
        assert isinstance(stream, VideoStream)
        stream.width = 64
        stream.height = 64
        stream.pix_fmt = "yuv420p"
        for index in range(8):
            picture = av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24")
            picture.pts = index
            out.mux(stream.encode(picture))
        out.mux(stream.encode(None))
    return path


def write_png(path: Path) -> Path:
    with av.open(str(path), "w", format="image2") as out:
        stream = out.add_stream("png", rate=1)
        assert isinstance(stream, VideoStream)
        stream.width = 16
        stream.height = 16
        stream.pix_fmt = "rgb24"
        picture = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")
        out.mux(stream.encode(picture))
        out.mux(stream.encode(None))
    return path


def peak_hz(samples: Signal) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    return float(np.fft.rfftfreq(samples.size, 1 / SAMPLE_RATE)[int(np.argmax(spectrum))])


def middle(samples: Signal) -> Signal:
    """The signal without its first and last 0.25 s, where lossy codecs ramp."""
    edge = SAMPLE_RATE // 4
    return samples[edge:-edge]


def rms(samples: Signal) -> float:
    return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# Formats


# (file name, audio codec, sample rate, layout, sample format, video codec)
FORMATS: list[tuple[str, str, int, str, str | None, str | None]] = [
    ("s16_16k.wav", "pcm_s16le", 16000, "mono", None, None),
    ("s16_8k.wav", "pcm_s16le", 8000, "mono", None, None),
    ("s24_44k_stereo.wav", "pcm_s24le", 44100, "stereo", None, None),
    ("s32_48k_stereo.wav", "pcm_s32le", 48000, "stereo", None, None),
    ("f32_22k.wav", "pcm_f32le", 22050, "mono", None, None),
    ("s16_48k_5.1.wav", "pcm_s16le", 48000, "5.1", None, None),
    ("stereo.flac", "flac", 44100, "stereo", None, None),
    ("stereo.mp3", "libmp3lame", 44100, "stereo", None, None),
    ("mono.m4a", "aac", 44100, "mono", None, None),
    ("stereo.ogg", "vorbis", 22050, "stereo", None, None),
    ("mono.opus", "libopus", 48000, "mono", None, None),
    ("audio_only_opus.webm", "libopus", 48000, "stereo", None, None),
    ("vp8_opus.webm", "libopus", 48000, "mono", None, "libvpx"),
    ("vp8_vorbis.webm", "vorbis", 44100, "stereo", None, "libvpx"),
    ("mpeg4_aac.mp4", "aac", 44100, "stereo", None, "mpeg4"),
    ("h264_aac.mov", "aac", 48000, "mono", None, "libx264"),
    ("mpeg4_mp3.mkv", "libmp3lame", 32000, "mono", None, "mpeg4"),
    ("mpeg4_flac.mkv", "flac", 44100, "stereo", "s16", "mpeg4"),
]
LOSSLESS = {"pcm_s16le", "pcm_s24le", "pcm_s32le", "pcm_f32le", "flac"}


@pytest.mark.parametrize(
    ("name", "codec", "rate", "layout", "sample_format", "video"),
    FORMATS,
    ids=[entry[0] for entry in FORMATS],
)
def test_decodes_format_to_16k_mono(
    tmp_path: Path,
    name: str,
    codec: str,
    rate: int,
    layout: str,
    sample_format: str | None,
    video: str | None,
) -> None:
    seconds = 2.0
    path = write_media(
        tmp_path / name,
        codec,
        rate=rate,
        layout=layout,
        seconds=seconds,
        sample_format=sample_format,
        video=video,
    )

    probed = probe(path)
    assert probed.path == path
    assert probed.size_bytes == path.stat().st_size
    assert probed.audio.kind == "audio"
    assert probed.audio.sample_rate == rate
    assert probed.audio.channels == av.AudioLayout(layout).nb_channels
    assert probed.duration == pytest.approx(seconds, abs=0.05)
    if video is not None:
        # The video track comes first; the audio track must still be found.
        assert [s.kind for s in probed.streams] == ["video", "audio"]
        assert probed.audio.index == 1

    info, samples = load_audio(path)
    assert samples.dtype == np.float32
    assert samples.ndim == 1
    assert samples.flags.c_contiguous
    lossless = codec in LOSSLESS
    # Lossless input resamples to the exact length; codecs pad or trim up to a frame.
    tolerance = 0.002 if lossless else 0.03
    assert samples.size / SAMPLE_RATE == pytest.approx(seconds, abs=tolerance)
    # Container lengths (Matroska's in particular) count the last codec frame
    # whole, padding included: up to 36 ms for MP3 at 32 kHz.
    assert samples.size / SAMPLE_RATE == pytest.approx(probed.duration, abs=tolerance + 0.02)
    assert info.duration == samples.size / SAMPLE_RATE
    assert info.audio == probed.audio

    body = middle(samples)
    assert abs(peak_hz(body) - TONE_HZ) < 3.0
    expected_rms = 0.5 / math.sqrt(2)
    assert rms(body) == pytest.approx(expected_rms, rel=0.01 if lossless else 0.1)
    assert float(np.max(np.abs(samples))) <= 1.0


def test_decode_alone_probes_itself(tmp_path: Path) -> None:
    path = write_media(tmp_path / "tone.flac", "flac", rate=44100, seconds=1.0)
    samples = decode(path)
    assert samples.size == SAMPLE_RATE
    assert decode(str(path), info=probe(path)).size == SAMPLE_RATE


# Levels and downmix


def test_full_scale_identical_stereo_stays_within_unit_range(tmp_path: Path) -> None:
    # FFmpeg's float stereo->mono rematrix would sum to about 1.41 here.
    path = write_media(
        tmp_path / "full_scale.wav", "pcm_f32le", rate=44100, layout="stereo", amplitude=1.0
    )
    _, samples = load_audio(path)
    assert float(np.max(np.abs(samples))) <= 1.0
    assert float(np.max(np.abs(samples))) > 0.99
    # Not clipped either: the averaged wave keeps the shape of a full-scale sine.
    assert rms(middle(samples)) == pytest.approx(1 / math.sqrt(2), rel=0.01)


def test_full_scale_int16_5_1_stays_within_unit_range(tmp_path: Path) -> None:
    path = write_media(
        tmp_path / "full_scale_51.wav",
        "pcm_s16le",
        rate=48000,
        layout="5.1",
        amplitude=1.0,
        seconds=1.0,
    )
    _, samples = load_audio(path)
    assert float(np.max(np.abs(samples))) <= 1.0
    assert rms(middle(samples)) == pytest.approx(1 / math.sqrt(2), rel=0.01)


def test_downmix_is_the_channel_average(tmp_path: Path) -> None:
    left = tone(1.0, 16000, 1, amplitude=1.0)[0]
    signal = np.stack([left, np.zeros_like(left)])
    path = write_media(tmp_path / "left_only.wav", "pcm_f32le", layout="stereo", signal=signal)
    _, samples = load_audio(path)
    # The average, on the 16-bit grid (half a step of error at most).
    np.testing.assert_allclose(samples, left / 2, atol=0.5 / 32768 + 1e-7)
    assert np.array_equal(samples * 32768, np.round(samples * 32768))


def test_many_channels(tmp_path: Path) -> None:
    # Eight planar channels once crashed PyAV's plane accessor; output is packed.
    path = tmp_path / "eight.wav"
    pcm = (tone(1.0, 22050, 1)[0] * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(8)
        out.setsampwidth(2)
        out.setframerate(22050)
        out.writeframes(np.repeat(pcm[:, None], 8, axis=1).tobytes())
    info, samples = load_audio(path)
    assert info.audio.channels == 8
    assert samples.size == SAMPLE_RATE
    assert rms(middle(samples)) == pytest.approx(0.5 / math.sqrt(2), rel=0.01)


@pytest.mark.parametrize(
    ("name", "codec"), [("silence.wav", "pcm_s16le"), ("silence.flac", "flac")]
)
def test_silence_decodes_to_zeros(tmp_path: Path, name: str, codec: str) -> None:
    path = write_media(
        tmp_path / name, codec, layout="stereo", signal=np.zeros((2, 16000), np.float32)
    )
    info, samples = load_audio(path)
    assert samples.size == 16000
    assert not samples.any()
    assert info.duration == pytest.approx(1.0)


def test_silent_lossy_file_is_near_zero(tmp_path: Path) -> None:
    path = write_media(
        tmp_path / "silence.mp3", "libmp3lame", rate=44100, signal=np.zeros((1, 44100), np.float32)
    )
    _, samples = load_audio(path)
    assert samples.size / SAMPLE_RATE == pytest.approx(1.0, abs=0.03)
    assert float(np.max(np.abs(samples))) < 1e-3


# Durations


def test_vbr_mp3_without_length_header_is_not_misjudged(tmp_path: Path) -> None:
    # Quiet start, loud end: FFmpeg extrapolates the length from the first
    # (low) frame bit rate and overestimates it several-fold.
    rate = 44100
    noise = np.random.default_rng(7).uniform(-0.5, 0.5, 3 * rate)
    signal = np.concatenate([np.zeros(rate), noise]).astype(np.float32)[None, :]
    path = write_media(
        tmp_path / "vbr.mp3",
        "libmp3lame",
        rate=rate,
        signal=signal,
        vbr=True,
        muxer_options={"write_xing": "0"},
    )
    probed = probe(path)
    assert probed.duration_source == "estimated"
    assert probed.duration > 6.0

    # A limit between the real length and the estimate is settled by counting packets.
    info = probe(path, max_seconds=5.0)
    assert info.duration_source == "scanned"
    assert info.duration == pytest.approx(4.0, abs=0.05)

    # The overestimate is not taken for truncation.
    _, samples = load_audio(path, max_seconds=5.0)
    assert samples.size / SAMPLE_RATE == pytest.approx(4.0, abs=0.05)


def test_buffer_grows_past_an_underestimated_duration(tmp_path: Path) -> None:
    path = write_media(tmp_path / "tone.wav", "pcm_s16le", rate=8000, seconds=3.0)
    info = dataclasses.replace(probe(path), duration=0.1, duration_source="estimated")
    samples = decode(path, info=info)
    assert samples.size == 3 * SAMPLE_RATE
    assert abs(peak_hz(samples) - TONE_HZ) < 3.0


# Length limits


def test_too_long_is_rejected_by_probe_before_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_media(tmp_path / "long.flac", "flac", rate=44100, seconds=3.0)

    def no_decoding(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the limit must be enforced before decoding")

    monkeypatch.setattr(audio, "_decode_stream", no_decoding)
    with pytest.raises(AudioTooLongError) as probed:
        probe(path, max_seconds=1.0)
    assert probed.value.code == "AUDIO_TOO_LONG"
    assert probed.value.details["duration"] == pytest.approx(3.0)
    assert probed.value.details["max_seconds"] == 1.0
    assert "long.flac" in str(probed.value)

    with pytest.raises(AudioTooLongError):
        load_audio(path, max_seconds=1.0)
    with pytest.raises(AudioTooLongError):
        decode(path, max_seconds=1.0)


def test_too_long_estimated_length_is_confirmed_then_rejected(tmp_path: Path) -> None:
    path = write_media(tmp_path / "long.wav", "pcm_s16le", seconds=3.0)
    with pytest.raises(AudioTooLongError) as raised:
        probe(path, max_seconds=2.5)
    assert raised.value.details["duration"] == pytest.approx(3.0)


def test_limit_is_also_enforced_while_decoding(tmp_path: Path) -> None:
    path = write_media(tmp_path / "long.wav", "pcm_s16le", seconds=3.0)
    underestimate = dataclasses.replace(probe(path), duration=0.5, duration_source="estimated")
    with pytest.raises(AudioTooLongError) as raised:
        decode(path, info=underestimate, max_seconds=1.0)
    assert raised.value.details["max_seconds"] == 1.0


def test_within_limit_decodes(tmp_path: Path) -> None:
    path = write_media(tmp_path / "short.wav", "pcm_s16le", seconds=1.0)
    info, samples = load_audio(path, max_seconds=1.0)
    assert samples.size == SAMPLE_RATE
    assert info.duration == 1.0


@pytest.mark.parametrize("limit", [0.0, -1.0, math.nan, math.inf])
def test_invalid_limit_is_an_option_error(tmp_path: Path, limit: float) -> None:
    path = write_media(tmp_path / "short.wav", "pcm_s16le", seconds=0.5)
    with pytest.raises(OptionError):
        probe(path, max_seconds=limit)


# Bad input


def assert_one_line_naming(error: MediaError, path: Path) -> None:
    message = str(error)
    assert path.name in message
    assert "\n" not in message
    assert error.details["path"] == str(path)


@pytest.mark.skipif(os.name == "nt", reason="colons are not allowed in Windows file names")
def test_file_name_is_never_taken_as_an_ffmpeg_protocol(tmp_path: Path) -> None:
    write_media(tmp_path / "other.wav", "pcm_s16le", seconds=1.0)
    path = write_media(tmp_path / "concat:other.wav", "pcm_s16le", seconds=2.0)
    _, samples = load_audio(path)
    assert samples.size == 2 * SAMPLE_RATE


def test_missing_file_is_file_not_found(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.wav"
    with pytest.raises(MediaNotFoundError) as raised:
        load_audio(path)
    assert raised.value.code == "FILE_NOT_FOUND"
    assert raised.value.details["reason"] == "not_found"
    assert "no such file" in str(raised.value)
    assert_one_line_naming(raised.value, path)


def test_directory_is_unsupported_media(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedMediaError) as raised:
        probe(tmp_path)
    assert raised.value.details["reason"] == "not_a_file"


@pytest.mark.parametrize("name", ["notes.txt", "README.md", "notes"])
def test_text_file_is_unsupported_media(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text("Meeting notes\nThis is plain text, not audio.\n" * 40)
    with pytest.raises(UnsupportedMediaError) as raised:
        load_audio(path)
    assert raised.value.code == "UNSUPPORTED_MEDIA"
    assert_one_line_naming(raised.value, path)


@pytest.mark.parametrize("name", ["noise.bin", "noise.mp3", "noise.wav"])
def test_random_bytes_are_unsupported_media(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(np.random.default_rng(1234).bytes(64 * 1024))
    with pytest.raises(UnsupportedMediaError) as raised:
        load_audio(path)
    assert_one_line_naming(raised.value, path)


def test_zero_byte_file_is_empty_media(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(EmptyMediaError) as raised:
        probe(path)
    assert raised.value.code == "EMPTY_MEDIA"
    assert_one_line_naming(raised.value, path)


def test_audio_track_without_samples_is_empty_media(tmp_path: Path) -> None:
    path = tmp_path / "no_frames.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(b"")
    with pytest.raises(EmptyMediaError) as raised:
        load_audio(path)
    assert_one_line_naming(raised.value, path)


def test_video_without_audio_has_no_audio_stream(tmp_path: Path) -> None:
    path = write_video_only(tmp_path / "silent_film.mp4")
    with pytest.raises(NoAudioStreamError) as raised:
        probe(path)
    assert raised.value.code == "NO_AUDIO_STREAM"
    assert_one_line_naming(raised.value, path)


def test_image_has_no_audio_stream(tmp_path: Path) -> None:
    path = write_png(tmp_path / "picture.png")
    with pytest.raises(NoAudioStreamError):
        load_audio(path)


TRUNCATABLE: list[tuple[str, str, int, str | None]] = [
    ("cut.wav", "pcm_s16le", 16000, None),
    ("cut.flac", "flac", 44100, None),
    ("cut.mp3", "libmp3lame", 44100, None),
    ("cut.webm", "libopus", 48000, None),
    ("cut.mkv", "libmp3lame", 44100, "mpeg4"),
    ("cut.mp4", "aac", 44100, "mpeg4"),
]


@pytest.mark.parametrize(
    ("name", "codec", "rate", "video"), TRUNCATABLE, ids=[entry[0] for entry in TRUNCATABLE]
)
def test_file_cut_in_half_is_corrupt_media(
    tmp_path: Path, name: str, codec: str, rate: int, video: str | None
) -> None:
    path = write_media(tmp_path / name, codec, rate=rate, seconds=4.0, video=video)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptMediaError) as raised:
        load_audio(path)
    assert raised.value.code == "CORRUPT_MEDIA"
    assert_one_line_naming(raised.value, path)


def test_no_file_handles_leak(tmp_path: Path) -> None:
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc to count open files")
    good = write_media(tmp_path / "good.flac", "flac", seconds=0.5)
    cut = write_media(tmp_path / "cut.flac", "flac", seconds=4.0)
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    text = tmp_path / "notes.txt"
    text.write_text("not audio\n" * 10)
    video = write_video_only(tmp_path / "video.mp4")

    before = open_fds()
    for _ in range(5):
        load_audio(good)
        for path, error in [
            (cut, CorruptMediaError),
            (text, UnsupportedMediaError),
            (video, NoAudioStreamError),
        ]:
            with pytest.raises(error):
                load_audio(path)
        with pytest.raises(AudioTooLongError):
            load_audio(cut, max_seconds=1.0)
    assert open_fds() == before


# Real recordings


@pytest.mark.corpus
def test_corpus_decodes_to_manifest_durations(corpus_dir: Path) -> None:
    manifests = [("asr", "audio"), ("video", "video"), ("diarization", "audio")]
    checked = 0
    mismatches: list[str] = []
    for folder, field in manifests:
        manifest = corpus_dir / folder / "manifest.jsonl"
        for line in manifest.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            entry = json.loads(line)
            info, samples = load_audio(corpus_dir / entry[field])
            checked += 1
            decoded = samples.size / SAMPLE_RATE
            if abs(decoded - entry["duration_s"]) > 0.1:
                mismatches.append(f"{entry[field]}: {decoded:.3f} s vs {entry['duration_s']} s")
            assert isinstance(info, MediaInfo)
            assert float(np.max(np.abs(samples))) <= 1.0
    assert checked > 0
    assert not mismatches, "; ".join(mismatches)
