"""pocketsphinx on the English items of the corpus: pooled WER and speed.

    python benchmarks/asr_pocketsphinx.py [--processes 2]

Speed is audio seconds over wall-clock seconds for the whole set, the decoder
processes already started (the one-off load is reported separately).
"""

from __future__ import annotations

import argparse
import time

from benchmarks.common import corpus_dir, machine
from hark.config import Settings
from hark.evaluation.asr import evaluate_asr, read_manifest
from hark.pipeline.engines.select import borrow_engine, engine_cache
from hark.pipeline.options import TranscribeOptions


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--processes", type=int, nargs="+", default=[2, 1])
    args = parser.parse_args()
    items = read_manifest(corpus_dir() / "asr" / "manifest.jsonl", {"en"})
    print(f"machine: {machine()}")
    print(f"items: {len(items)} English")
    for processes in args.processes:
        settings = Settings(_env_file=None, asr_processes=processes)
        engine_cache(settings).clear()
        started = time.perf_counter()
        with borrow_engine("pocketsphinx", settings):
            load = time.perf_counter() - started
        report = evaluate_asr(items, TranscribeOptions(model="pocketsphinx"), settings)
        row = report.summary()["en"]
        print(f"processes={processes}: WER {row['error_rate']:.3f} "
              f"({int(row['errors'])}/{int(row['reference_length'])} words), "
              f"{row['audio_seconds']:.1f} s audio in {row['processing_seconds']:.1f} s = "
              f"{row['real_time_factor']:.1f}x real time (decoder start {load:.1f} s)")
        engine_cache(settings).clear()


if __name__ == "__main__":
    main()
