"""Compressed test audio made at test time with PyAV's encoders (no ffmpeg binary)."""

from __future__ import annotations

import io

import av
import numpy as np

from hark.pipeline.audio import SAMPLE_RATE

# Container → (codec, rate): what a browser's MediaRecorder and common streams send.
FORMATS = {
    "webm": ("libopus", 48000),
    "ogg": ("libopus", 48000),
    "mp3": ("libmp3lame", 44100),
    "flac": ("flac", 16000),
}


def encode(samples: np.ndarray, container: str) -> bytes:
    """16 kHz mono float samples as a file of `container` (a key of FORMATS)."""
    codec, rate = FORMATS[container]
    out = io.BytesIO()
    with av.open(out, "w", format=container) as muxer:
        stream = muxer.add_stream(codec, rate=rate, layout="mono")
        assert isinstance(stream, av.AudioStream)
        resampler = av.AudioResampler(format=stream.codec_context.format, layout="mono",
                                      rate=rate)
        pcm = (np.clip(samples, -1, 1) * 32767).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(pcm[None, :], format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        for resampled in [*resampler.resample(frame), *resampler.resample(None)]:
            for packet in stream.encode(resampled):
                muxer.mux(packet)
        for packet in stream.encode(None):
            muxer.mux(packet)
    return out.getvalue()


def video_only_webm() -> bytes:
    """A second of black VP8 video and no audio track."""
    out = io.BytesIO()
    with av.open(out, "w", format="webm") as muxer:
        stream = muxer.add_stream("libvpx", rate=10)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for _ in range(10):
            frame = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                muxer.mux(packet)
        for packet in stream.encode(None):
            muxer.mux(packet)
    return out.getvalue()
