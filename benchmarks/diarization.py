"""Diarization on the development set, the corpus set and the synthetic conversations.

    python -m benchmarks.diarization [--halves held] [--devset DIR] [--runs 1]
                                     [--threads N] [--extra DIR ...] [--oracle]

The development set (see docs/diarization.md) is built into DIR (default
/tmp/hark-devset) when missing; `--halves held` (the default) reports the held-back
half, on which nothing was tuned; `--halves tune held` adds the tuning half.

DER (pyannote.metrics, overlap scored) is given at collar 0 and at ±0.25 s, split
into miss, false alarm and confusion, per file and pooled per set. Speed is audio
seconds over wall-clock seconds, for diarization alone and with the VAD before it;
with --runs N each file is diarized N times and the fastest run counts, since other
work on the machine makes single timings noisy. `--extra DIR` adds a folder of
<name>.ogg/.wav + <name>.rttm pairs as another set.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tests.support.conversations import FIXTURES
from tests.support.devset import build_half

from benchmarks.common import corpus_dir, machine
from hark.evaluation.diarization import (
    COLLARS,
    DiarizationItem,
    DiarizationResult,
    count_accuracy,
    overlap_miss,
    pooled,
    pooled_overlap_miss,
    read_diarization_manifest,
    read_rttm,
    score,
)
from hark.pipeline.audio import SAMPLE_RATE, load_audio
from hark.pipeline.diarization.base import DiarizationOptions
from hark.pipeline.diarization.resemblyzer import ResemblyzerDiarizer
from hark.pipeline.vad import VadOptions, detect_speech

# The pipeline's diarization regions (see hark.pipeline.run).
_REGION_SECONDS = 15.0


@dataclass
class Timing:
    audio: float = 0.0
    vad: float = 0.0
    diarize: float = 0.0


def folder_items(folder: Path) -> list[DiarizationItem]:
    items = []
    for rttm in sorted(folder.glob("*.rttm")):
        audio = next((p for p in (rttm.with_suffix(s) for s in (".ogg", ".wav", ".flac"))
                      if p.is_file()), None)
        if audio is not None:
            items.append(DiarizationItem(rttm.stem, audio, rttm, None, None))
    return items


def run_set(name: str, items: list[DiarizationItem], diarizer: ResemblyzerDiarizer,
            runs: int, oracle: bool) -> tuple[list[DiarizationResult], Timing]:
    print(f"\n{name}")
    print(f"  {'file':24s} {'spk':>5s}  {'DER0':>6s} {'miss':>5s} {'FA':>5s} {'conf':>5s}"
          f"  {'DER.25':>6s} {'conf':>5s}  {'xRT':>6s} {'xRT+VAD':>7s}")
    results: list[DiarizationResult] = []
    timing = Timing()
    for item in items:
        _, audio = load_audio(item.audio)
        reference = read_rttm(item.rttm)
        speakers = len({s for _, _, s in reference})
        options = DiarizationOptions(num_speakers=speakers if oracle else None)
        started = time.perf_counter()
        regions = detect_speech(audio, VadOptions(), _REGION_SECONDS)
        vad = time.perf_counter() - started
        best = float("inf")
        for _ in range(runs):
            started = time.perf_counter()
            diarization = diarizer.diarize(audio, regions, options)
            best = min(best, time.perf_counter() - started)
        duration = audio.size / SAMPLE_RATE
        result = DiarizationResult(item, speakers, len(diarization.speakers), duration, best)
        region = item.uem or (0.0, duration)
        result.components = score(reference, diarization, region)
        result.overlap_seconds, result.overlap_missed_seconds = overlap_miss(
            reference, diarization, region)
        results.append(result)
        timing.audio += duration
        timing.vad += vad
        timing.diarize += best
        c0, c25 = result.components["collar 0"], result.components["collar 0.25"]
        print(f"  {item.id[:24]:24s} {result.found_speakers:>2d}/{speakers:<2d} "
              f" {100 * c0['der']:6.1f} {100 * c0['miss']:5.1f} {100 * c0['false_alarm']:5.1f}"
              f" {100 * c0['confusion']:5.1f}  {100 * c25['der']:6.1f}"
              f" {100 * c25['confusion']:5.1f}  {duration / best:6.1f} "
              f"{duration / (best + vad):7.1f}")
    for collar in COLLARS:
        row = pooled(results, collar)
        print(f"  overall {collar}: DER {100 * row['der']:.1f} % (miss {100 * row['miss']:.1f}, "
              f"false alarm {100 * row['false_alarm']:.1f}, "
              f"confusion {100 * row['confusion']:.1f})")
    right = sum(r.count_right for r in results)
    print(f"  speaker count right: {right}/{len(results)} ({100 * count_accuracy(results):.0f} %)")
    missed = pooled_overlap_miss(results)
    if missed is not None:
        print(f"  overlap miss: {100 * missed:.1f} % of the reference's overlapped speech")
    print(f"  speed: {timing.audio:.1f} s of audio, diarization {timing.diarize:.2f} s = "
          f"{timing.audio / max(timing.diarize, 1e-9):.1f}x real time; with VAD "
          f"{timing.audio / max(timing.diarize + timing.vad, 1e-9):.1f}x")
    return results, timing


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=1, help="timing runs per file (best kept)")
    parser.add_argument("--halves", nargs="*", default=["held"], choices=["tune", "held"],
                        help="development-set halves to run (none: skip the set)")
    parser.add_argument("--devset", type=Path, default=Path("/tmp/hark-devset"),
                        help="where the development set is built")
    parser.add_argument("--extra", type=Path, nargs="*", default=[],
                        help="more folders of audio + RTTM pairs")
    parser.add_argument("--threads", type=int, default=None,
                        help="PyTorch threads for the encoder (default: the diarizer's own)")
    parser.add_argument("--oracle", action="store_true",
                        help="give the diarizer the reference speaker count")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    started = time.perf_counter()
    diarizer = ResemblyzerDiarizer(threads=args.threads)
    print(f"diarizer: {diarizer.name}, loaded in {time.perf_counter() - started:.1f} s; "
          f"{'oracle' if args.oracle else 'automatic'} speaker count")
    # The first call pays for lazy initialisation inside PyTorch; keep it out of timings.
    diarizer.embed(np.random.default_rng(0).normal(0, 0.1, SAMPLE_RATE * 2).astype(np.float32))
    sets = [(f"development set, {half} half",
             read_diarization_manifest(build_half(half, args.devset, corpus_dir())))
            for half in args.halves]
    sets += [("corpus (diarization manifest)",
             read_diarization_manifest(corpus_dir() / "diarization" / "manifest.jsonl")),
            ("synthetic conversations (tests/fixtures/conversations)", folder_items(FIXTURES))]
    sets += [(f"extra: {folder}", folder_items(folder)) for folder in args.extra]
    for name, items in sets:
        run_set(name, items, diarizer, args.runs, args.oracle)


if __name__ == "__main__":
    main()
