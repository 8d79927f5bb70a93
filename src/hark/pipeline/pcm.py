"""Raw 16-bit PCM as it arrives from a socket or a pipe, turned into the pipeline's
16 kHz float samples."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import numpy as np

from hark.pipeline.audio import SAMPLE_RATE
from hark.pipeline.samples import PCM16_SCALE

# The rates a live stream may send (what microphones and telephony use).
SAMPLE_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
# pcm16: raw 16-bit little-endian mono at a listed rate; container: compressed audio
# in a container read as it arrives (WebM/Opus, Ogg, MP3, ...), which names its rate.
ENCODINGS = ("pcm16", "container")


class StreamDecoder(Protocol):
    """A live stream's frames in, 16 kHz mono float32 pieces out."""

    def pieces(self, frame: bytes, *, last: bool = False) -> Iterator[np.ndarray]:
        """The samples `frame` completes (all that is left, with `last`)."""
        ...

    def close(self) -> None: ...


class Pcm16Decoder:
    """Little-endian 16-bit mono frames at any listed rate → float32 at 16 kHz.

    A frame may end inside a sample: its odd byte waits for the next frame. Resampling
    keeps its filter state from frame to frame, so frame boundaries leave no trace."""

    def __init__(self, sample_rate: int) -> None:
        self._carry = b""
        self._resampler: Any = None
        if sample_rate != SAMPLE_RATE:
            import soxr

            self._resampler = soxr.ResampleStream(sample_rate, SAMPLE_RATE, 1, dtype="float32")

    def decode(self, frame: bytes, *, last: bool = False) -> np.ndarray:
        data = self._carry + frame
        whole = len(data) // 2 * 2
        self._carry = data[whole:]
        samples = np.frombuffer(data[:whole], dtype="<i2").astype(np.float32) / PCM16_SCALE
        if self._resampler is None:
            return samples
        out: np.ndarray = self._resampler.resample_chunk(samples, last=last)
        return out.astype(np.float32, copy=False)

    def pieces(self, frame: bytes, *, last: bool = False) -> Iterator[np.ndarray]:
        samples = self.decode(frame, last=last)
        if samples.size:
            yield samples

    def close(self) -> None:
        pass


def open_stream_decoder(encoding: str, sample_rate: int = SAMPLE_RATE) -> StreamDecoder:
    """The decoder for a stream of `encoding` (one of ENCODINGS)."""
    if encoding == "container":
        from hark.pipeline.stream_media import ContainerStreamDecoder

        return ContainerStreamDecoder()
    return Pcm16Decoder(sample_rate)
