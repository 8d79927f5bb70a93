"""Memory of one long live stream: does it stay flat however long the stream runs?

    python -m benchmarks.live_memory [--minutes 60] [--model tiny.en]

The stream is the English corpus read again and again for `--minutes` of audio: each
item followed by a pause of 0.3 to 2.5 s (some too short to end the utterance, so
phrases run together for up to a minute), fed 100 ms at a time to `LiveTranscriber` as
fast as the machine decodes it (no sleeping: the audio a stream holds depends on its
clock, not the wall's). Every minute of stream time it prints the process's
resident memory and the audio the transcriber holds. Flat means the last rows are no
higher than the first ones after warm-up (the model, its caches and the allocator's
pools are in place after the first minutes).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator

import numpy as np
import psutil

from benchmarks.common import corpus_dir, english_manifest, machine
from hark.config import Settings
from hark.pipeline.audio import SAMPLE_RATE, load_audio
from hark.pipeline.engines.select import borrow_engine
from hark.pipeline.live import LiveTranscriber
from hark.pipeline.options import TranscribeOptions

PIECE = SAMPLE_RATE // 10
REPORT_EVERY = 60 * SAMPLE_RATE


def stream(minutes: float, seed: int = 7) -> Iterator[np.ndarray]:
    """Pieces of 100 ms: the corpus over and over, with pauses, for `minutes`."""
    items = [load_audio(corpus_dir() / str(row["audio"]))[1] for row in english_manifest()]
    rng = np.random.default_rng(seed)
    left = int(minutes * 60 * SAMPLE_RATE)
    while left > 0:
        for audio in items:
            pause = np.zeros(int(rng.uniform(0.3, 2.5) * SAMPLE_RATE), np.float32)
            for part in (audio, pause):
                for start in range(0, part.shape[0], PIECE):
                    piece = part[start:start + PIECE][:left]
                    left -= piece.shape[0]
                    yield piece
                    if left <= 0:
                        return


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--model", default="tiny.en")
    args = parser.parse_args()
    print(machine())
    options = TranscribeOptions(model=args.model, language="en")
    process = psutil.Process()
    settings = Settings(_env_file=None, model_packages=True)
    with borrow_engine(args.model, settings) as engine:
        transcriber = LiveTranscriber(engine, options)
        finals = words = 0
        held = 0.0
        began = time.perf_counter()
        print(f"model {args.model}, {args.minutes:g} min of stream")
        print("stream min | RSS MiB | held now s | most held s | finals | words | wall s")
        next_report = 0
        for piece in stream(args.minutes):
            for event in transcriber.feed(piece):
                if event.kind == "final" and event.segment is not None:
                    finals += 1
                    words += len(event.segment.words)
            held = max(held, transcriber.buffered_seconds)
            if transcriber.received >= next_report:
                print(f"{transcriber.received / SAMPLE_RATE / 60:10.1f} | "
                      f"{process.memory_info().rss / 2**20:7.0f} | "
                      f"{transcriber.buffered_seconds:10.1f} | {held:11.1f} | {finals:6d} | "
                      f"{words:5d} | {time.perf_counter() - began:6.0f}", flush=True)
                next_report += REPORT_EVERY
        transcriber.finish()
        print(f"end: RSS {process.memory_info().rss / 2**20:.0f} MiB, most audio held "
              f"{held:.1f} s, {finals} finals, {words} words, "
              f"{time.perf_counter() - began:.0f} s wall")


if __name__ == "__main__":
    main()
