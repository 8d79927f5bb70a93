"""Compressed audio as it arrives — WebM/Opus from a browser's MediaRecorder, Ogg/Opus,
MP3, FLAC, WAV, ADTS AAC — decoded progressively into the pipeline's 16 kHz samples.

FFmpeg reads from a blocking pipe in a thread of its own: each frame sent in is
written to the pipe, and the samples it completes are handed back once the demuxer
is waiting for more bytes, so nothing decodable is held back to the next frame.

Memory stays bounded whatever a stream claims: the pipe holds at most the frames
not yet read, decoded audio waits in a short queue (a full queue stops the decoder
until the caller takes it), and the caller takes it piece by piece.

Only the listed demuxers may open (no playlists or other formats that open nested
resources), and no protocol at all: a stream cannot make FFmpeg read a file or URL.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import Any

import av
import numpy as np

from hark.errors import CorruptMediaError, HarkError, NoAudioStreamError, UnsupportedMediaError
from hark.pipeline.audio import SAMPLE_RATE
from hark.pipeline.media_files import ffmpeg_reason

# Demuxers that read front to back without seeking (the names FFmpeg gives them).
STREAM_DEMUXERS = ("matroska", "webm", "ogg", "mp3", "wav", "flac", "aac", "w64", "au",
                   "aiff", "caf")
_OPEN_OPTIONS = {
    "format_whitelist": ",".join(STREAM_DEMUXERS),
    # A name that is no protocol: nested opens (playlists, references) all fail.
    "protocol_whitelist": "none",
    # Probe only what a stream's first frames hold; FFmpeg's default of 5 MB would
    # wait minutes for a low-bitrate stream to say what it is.
    "probesize": "32768",
    "analyzeduration": "0",
}
_QUEUE_FRAMES = 64          # decoded frames waiting for the caller (a few seconds)
_WAIT_SECONDS = 5.0         # how long a frame's bytes may take to decode
_END = object()


class _Pipe:
    """Bytes written by the caller, read by FFmpeg; reads block until bytes come."""

    def __init__(self) -> None:
        self._ready = threading.Condition()
        self._chunks: deque[bytes] = deque()
        self._closed = False
        self._aborted = False
        self._reader_waiting = False

    def write(self, data: bytes) -> None:
        with self._ready:
            self._chunks.append(data)
            self._ready.notify_all()

    def close(self) -> None:
        """No more bytes: the reader sees the end of the stream."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()

    def abort(self) -> None:
        with self._ready:
            self._aborted = True
            self._ready.notify_all()

    @property
    def aborted(self) -> bool:
        return self._aborted

    def drained(self) -> bool:
        """The reader took every byte and waits for more."""
        with self._ready:
            return self._reader_waiting and not self._chunks

    def read(self, size: int) -> bytes:
        with self._ready:
            while not self._chunks and not self._closed and not self._aborted:
                self._reader_waiting = True
                self._ready.wait()
            self._reader_waiting = False
            if self._aborted or not self._chunks:
                return b""  # the end of the stream, as FFmpeg sees it
            head = self._chunks.popleft()
            if len(head) > size:
                self._chunks.appendleft(head[size:])
                head = head[:size]
            return head


class ContainerStreamDecoder:
    """Frames of a compressed stream in, 16 kHz mono float32 pieces out."""

    def __init__(self) -> None:
        self._pipe = _Pipe()
        self._out: queue.Queue[Any] = queue.Queue(maxsize=_QUEUE_FRAMES)
        self._thread = threading.Thread(target=self._decode, name="hark-stream-decode",
                                        daemon=True)
        self._started = False
        self._ended = False

    def pieces(self, frame: bytes, *, last: bool = False) -> Iterator[np.ndarray]:
        """The samples `frame` completes (all that is left, with `last`)."""
        if not self._started:
            self._started = True
            self._thread.start()
        if frame:
            self._pipe.write(frame)
        if last:
            self._pipe.close()
        deadline = time.monotonic() + _WAIT_SECONDS
        while not self._ended:
            try:
                item = self._out.get_nowait()
            except queue.Empty:
                # The reader waiting on an empty pipe has queued all it decoded.
                if not last and ((self._pipe.drained() and self._out.empty())
                                 or time.monotonic() > deadline):
                    return
                try:
                    item = self._out.get(timeout=0.005)
                except queue.Empty:
                    continue
            if item is _END:
                self._ended = True
            elif isinstance(item, HarkError):
                self._ended = True
                raise item
            else:
                deadline = time.monotonic() + _WAIT_SECONDS
                yield item

    def close(self) -> None:
        """Stop the decoder thread, wherever it is."""
        self._pipe.abort()
        while self._thread.is_alive():
            try:  # a decoder blocked on a full queue finds room and sees the abort
                self._out.get_nowait()
            except queue.Empty:
                self._thread.join(0.05)

    def _put(self, item: Any) -> None:
        while not self._pipe.aborted:
            try:
                self._out.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _decode(self) -> None:
        try:
            self._demux()
            self._put(_END)
        except HarkError as exc:
            self._put(exc)
        except av.FFmpegError as exc:
            if not self._pipe.aborted:
                self._put(CorruptMediaError(
                    f"The stream could not be decoded: {ffmpeg_reason(exc)}"))

    def _demux(self) -> None:
        try:
            container = av.open(self._pipe, mode="r", options=_OPEN_OPTIONS,
                                metadata_errors="replace")
        except av.FFmpegError as exc:
            raise UnsupportedMediaError(
                "The stream is not audio in a container that can be read as it arrives "
                f"({', '.join(STREAM_DEMUXERS)}): {ffmpeg_reason(exc)}") from exc
        with container:
            stream = next((s for s in container.streams if s.type == "audio"), None)
            if stream is None:
                raise NoAudioStreamError("The stream holds no audio")
            resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue
                try:
                    frames = packet.decode()
                except av.FFmpegError:
                    continue  # a damaged packet is a moment of silence, not the end
                for frame in frames:
                    if isinstance(frame, av.AudioFrame):
                        self._emit(resampler.resample(frame))
            self._emit(resampler.resample(None))

    def _emit(self, frames: list[av.AudioFrame]) -> None:
        for frame in frames:
            samples = frame.to_ndarray().reshape(-1).astype(np.float32, copy=False)
            if samples.size:
                self._put(samples)
