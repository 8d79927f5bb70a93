"""Live transcription on the English corpus: accuracy against offline, latency, capacity.

    python -m benchmarks.live [--model auto] [--streams 1 2 4] [--items N] [--half tune|report]

Each recording is fed to `LiveTranscriber` 100 ms at a time, as a microphone would
send it. With one stream, real time is simulated exactly: a piece "arrives" at its
position in the recording, and work starts when both it has arrived and the previous
piece's work is done, so no sleeping is needed and a slow decode delays what follows
as it would live. With several streams, threads feed at real speed (sleeping) and
share the model and the cores.

Final latency is the time from the end of a final phrase's last word being sent to
the `final` message; first-partial latency is from a speech start to the first
partial after it. WER is of the finals against the reference, beside the offline
transcript of the same model.
"""

from __future__ import annotations

import argparse
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from benchmarks.common import corpus_dir, english_manifest, machine
from hark.config import Settings
from hark.evaluation.scoring import count_errors, total
from hark.pipeline.audio import SAMPLE_RATE, load_audio
from hark.pipeline.engines.base import Engine
from hark.pipeline.engines.select import borrow_engine, resolve_model
from hark.pipeline.live import LiveEvent, LiveOptions, LiveTranscriber
from hark.pipeline.options import TranscribeOptions
from hark.pipeline.run import transcribe_audio

PIECE = SAMPLE_RATE // 10


@dataclass
class StreamResult:
    text: str = ""
    final_latency: list[float] = field(default_factory=list)
    partial_latency: list[float] = field(default_factory=list)


def note(events: list[LiveEvent], at: float, result: StreamResult, started: list[float]) -> None:
    for event in events:
        if event.kind == "speech_started":
            started.append(event.time)
        elif event.kind == "partial" and started:
            result.partial_latency.append(at - started.pop())
        elif event.kind == "final" and event.segment is not None:
            result.text += " " + event.segment.text
            result.final_latency.append(at - event.segment.end)


def simulated(engine: Engine, options: TranscribeOptions, live: LiveOptions,
              audio: np.ndarray) -> StreamResult:
    """One stream in exactly simulated real time."""
    transcriber, result = LiveTranscriber(engine, options, live), StreamResult()
    started: list[float] = []
    clock = 0.0
    for start in range(0, audio.shape[0], PIECE):
        piece = audio[start:start + PIECE]
        clock = max(clock, (start + piece.shape[0]) / SAMPLE_RATE)
        began = time.perf_counter()
        events = transcriber.feed(piece)
        clock += time.perf_counter() - began
        note(events, clock, result, started)
    began = time.perf_counter()
    events = transcriber.finish()
    note(events, clock + time.perf_counter() - began, result, started)
    return result


def real_time(engine: Engine, options: TranscribeOptions, live: LiveOptions,
              audio: np.ndarray) -> StreamResult:
    """One stream fed at real speed by the wall clock (for concurrent runs)."""
    transcriber, result = LiveTranscriber(engine, options, live), StreamResult()
    started: list[float] = []
    origin = time.perf_counter()
    for start in range(0, audio.shape[0], PIECE):
        piece = audio[start:start + PIECE]
        due = origin + (start + piece.shape[0]) / SAMPLE_RATE
        time.sleep(max(0.0, due - time.perf_counter()))
        events = transcriber.feed(piece)
        note(events, time.perf_counter() - origin, result, started)
    note(transcriber.finish(), time.perf_counter() - origin, result, started)
    return result


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def report(label: str, results: list[StreamResult]) -> None:
    finals = [v for r in results for v in r.final_latency]
    partials = [v for r in results for v in r.partial_latency]
    print(f"  {label}: final latency p50 {percentile(finals, 50):.2f} s, "
          f"p95 {percentile(finals, 95):.2f} s ({len(finals)} finals); first partial "
          f"p50 {percentile(partials, 50):.2f} s, p95 {percentile(partials, 95):.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="auto")
    parser.add_argument("--streams", type=int, nargs="*", default=[1, 2, 4])
    parser.add_argument("--items", type=int, default=0, help="first N English items (0: all)")
    parser.add_argument("--end-silence-ms", type=int, default=LiveOptions().end_silence_ms)
    parser.add_argument("--decode-every", type=float, default=LiveOptions().decode_every)
    parser.add_argument("--half", choices=["tune", "report"],
                        help="every other English item: tune on one half, report on the other")
    args = parser.parse_args()
    live_options = LiveOptions(end_silence_ms=args.end_silence_ms, decode_every=args.decode_every)
    settings = Settings(_env_file=None, model_packages=True)
    rows = english_manifest()
    if args.half is not None:
        rows = rows[0 if args.half == "tune" else 1::2]
    rows = rows[:args.items or None]
    items = [(str(r["text"]), load_audio(corpus_dir() / str(r["audio"]))[1]) for r in rows]
    seconds = sum(a.shape[0] for _, a in items) / SAMPLE_RATE
    model = resolve_model(args.model, settings, "en")
    options = TranscribeOptions(model=model, language="en")
    print(f"{machine()}; model {model}; {len(items)} English items, {seconds:.0f} s")
    with borrow_engine(model, settings) as engine:
        offline = [transcribe_audio(a, options, settings).text for _, a in items]
        streamed = [simulated(engine, options, live_options, a) for _, a in items]
        for name, texts in (("offline", offline), ("live", [r.text for r in streamed])):
            errors = total([count_errors(ref, hyp, "en")
                            for (ref, _), hyp in zip(items, texts, strict=True)])
            print(f"  WER {name}: {errors.rate:.3f}")
        report("1 stream (simulated real time)", streamed)
        for count in [n for n in args.streams if n > 1]:
            report(f"{count} streams at once (real time)",
                   concurrent(engine, options, live_options, [a for _, a in items], count))


def concurrent(engine: Engine, options: TranscribeOptions, live: LiveOptions,
               recordings: list[np.ndarray], count: int) -> list[StreamResult]:
    """`count` threads, each streaming every recording in its own order."""
    results: list[StreamResult] = []
    lock = threading.Lock()

    def run(offset: int) -> None:
        mine = [real_time(engine, options, live, a)
                for a in recordings[offset:] + recordings[:offset]]
        with lock:
            results.extend(mine)

    threads = [threading.Thread(target=run, args=(i * len(recordings) // count,))
               for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results

if __name__ == "__main__":
    main()
