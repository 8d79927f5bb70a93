"""A long recording through `hark transcribe`: time and peak memory.

    python -m benchmarks.long_recording [--minutes 10 60] [--model auto]

The recordings are English corpus clips back to back; the model is the default (`auto`,
Whisper base from its package) unless named. Peak RSS is the largest sum over the `hark`
process and any decoder processes, sampled every 0.1 s.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from benchmarks.common import long_recording, machine, run_measured


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, nargs="+", default=[10, 60])
    parser.add_argument("--model", default="auto")
    args = parser.parse_args()
    print(f"machine: {machine()}, model {args.model}")
    times: dict[float, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for minutes in args.minutes:
            audio = long_recording(minutes * 60, Path(tmp) / f"long-{minutes:g}min.wav")
            result = run_measured(
                [sys.executable, "-m", "hark", "transcribe", str(audio), "-m", args.model,
                 "-l", "en", "-f", "json", "-o", tmp], env={"HARK_DATA_DIR": tmp})
            if result.returncode != 0:
                raise SystemExit(result.stderr)
            times[minutes] = result.seconds
            print(f"{minutes:g} min: {result.seconds:.1f} s wall "
                  f"({minutes * 60 / result.seconds:.1f}x real time), "
                  f"peak RSS {result.peak_rss_bytes / 2**20:.0f} MiB")
    if len(times) >= 2:
        (short, t_short), (long, t_long) = sorted(times.items())[0], sorted(times.items())[-1]
        print(f"time ratio {long:g}/{short:g} min: {t_long / t_short:.2f} "
              f"(linear would be {long / short:.2f})")


if __name__ == "__main__":
    main()
