"""Decoded recordings kept on disk and read back a span at a time.

A decoded recording is 64 KB of float32 per second: 0.9 GB for four hours. The
pipeline never needs it all at once (VAD reads it in blocks of minutes, engines and
the diarizer read the spans they work on), so it is written to a `SampleStore`, an
unnamed temporary file, and read back by slicing: `store[a:b]` is a float32 array of
those samples, `store.shape[0]` the length. Code that reads audio only that way
(`SampleSource`) takes a store or an in-memory array alike.

Every decoded sample lies on the 16-bit grid (see `hark.pipeline.audio`), so the file
holds 16-bit integers, half the size of float32, and reads back bit-identical.

The file has no name: the operating system removes it when it is closed or when the
process ends, however it ends, so nothing is left behind by a crash or a kill.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

Samples = npt.NDArray[np.float32]

# Full scale on the 16-bit grid; a power of two, so scaling by it is exact.
PCM16_SCALE = 32768.0
_BYTES_PER_SAMPLE = 2
# Writes are gathered into pieces of about this size.
_WRITE_BUFFER_BYTES = 1 << 20


class SampleSource(Protocol):
    """16 kHz mono audio readable a span at a time: an ndarray or a `SampleStore`."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    def __getitem__(self, span: slice, /) -> Any: ...


class SampleStore:
    """Samples on the 16-bit grid in an unnamed temporary file, read back as float32.

    Written once from start to end by `append` (the decoder), then read by slicing
    from any number of threads. Close it (or use it as a context manager) when done.
    """

    dtype = np.dtype(np.float32)

    def __init__(self, directory: str | Path | None = None) -> None:
        # Unbuffered: appends are gathered here, and reads go straight to the file.
        # The store owns the file for its lifetime and closes it in `close`.
        self._file = tempfile.TemporaryFile(  # noqa: SIM115
            prefix="hark-samples-", dir=directory, buffering=0)
        self._fd = self._file.fileno()
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._written = 0  # samples in the file
        self._length = 0  # samples readable (the tail may be cut back)

    def append(self, grid: npt.NDArray[np.floating[Any]]) -> None:
        """Add samples given as integers of the 16-bit grid (-32768 .. 32767), unscaled."""
        pcm = np.asarray(grid).astype("<i2")
        self._pending.append(pcm.tobytes())
        self._pending_bytes += pcm.nbytes
        self._length = self._written = self._written + pcm.size
        if self._pending_bytes >= _WRITE_BUFFER_BYTES:
            self._flush()

    def truncate(self, length: int) -> None:
        """Keep only the first `length` samples (decoders pad the last frame); the
        decoder calls this last, and reads from several threads may follow."""
        self._flush()
        self._length = max(0, min(length, self._written))

    @property
    def shape(self) -> tuple[int]:
        return (self._length,)

    @property
    def size(self) -> int:
        return self._length

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, span: slice, /) -> Samples:
        if not isinstance(span, slice):
            raise TypeError("a SampleStore is read by slices, e.g. store[start:end]")
        start, stop, step = span.indices(self._length)
        if step != 1:
            raise TypeError("a SampleStore is read by contiguous slices")
        return self.read(start, stop)

    def read(self, start: int, stop: int) -> Samples:
        """Samples [start, stop) as float32 in [-1, 1); empty when the span is."""
        start, stop = max(0, start), min(stop, self._length)
        count = max(0, stop - start)
        pcm = np.empty(count, dtype="<i2")
        if count:
            self._flush()
            view = pcm.data.cast("B")
            offset, done = start * _BYTES_PER_SAMPLE, 0
            while done < view.nbytes:
                got = os.preadv(self._fd, [view[done:]], offset + done)
                if got <= 0:
                    raise OSError(f"decoded samples file ended at byte {offset + done}")
                done += got
        out = pcm.astype(np.float32)
        out *= np.float32(1.0 / PCM16_SCALE)
        return out

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> Samples:
        # For consumers that insist on one array; this costs the whole recording in
        # memory, which is what the store exists to avoid.
        whole = self.read(0, self._length)
        return whole if dtype is None else whole.astype(dtype, copy=False)

    def _flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            self._pending_bytes = 0
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]

    def close(self) -> None:
        self._pending.clear()
        self._file.close()

    @property
    def closed(self) -> bool:
        return self._file.closed

    def __enter__(self) -> SampleStore:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()
