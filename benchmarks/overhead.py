"""What `hark transcribe` costs on top of the engine it drives.

    python benchmarks/overhead.py [--minutes 10] [--rounds 2]

Both sides are fresh processes doing the same work on the same recording: decode,
VAD, pocketsphinx over the chunks. `direct` calls those stage functions and the
engine itself; `hark` is the command with its progress, transcript and writer.
The best of `--rounds` runs of each is compared.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from benchmarks.common import long_recording, machine, run_measured


def direct(path: Path) -> None:
    from hark.pipeline.audio import load_audio
    from hark.pipeline.engines.pocketsphinx import PocketsphinxEngine
    from hark.pipeline.options import TranscribeOptions
    from hark.pipeline.vad import VadOptions, speech_chunks

    engine = PocketsphinxEngine()
    try:
        _, audio = load_audio(path)
        chunks = speech_chunks(audio, VadOptions(), engine.chunk_seconds, engine.pack_chunks)
        segments = list(engine.recognize(audio, chunks, TranscribeOptions()).segments)
        print(" ".join(s.text for s in segments))
    finally:
        engine.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--direct", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.direct:
        direct(args.direct)
        return
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        audio = long_recording(args.minutes * 60, Path(tmp) / "overhead.wav")
        commands = {
            "direct": [sys.executable, "-m", "benchmarks.overhead", "--direct", str(audio)],
            "hark": [sys.executable, "-m", "hark", "transcribe", str(audio), "-m",
                     "pocketsphinx", "-f", "txt"],
        }
        best: dict[str, float] = {}
        for _ in range(args.rounds):
            for name, command in commands.items():
                result = run_measured(command)
                if result.returncode != 0:
                    raise SystemExit(result.stderr)
                best[name] = min(best.get(name, float("inf")), result.seconds)
                print(f"{name}: {result.seconds:.1f} s")
    print(f"best direct {best['direct']:.1f} s, best hark {best['hark']:.1f} s: "
          f"overhead {100 * (best['hark'] / best['direct'] - 1):+.1f} %")


if __name__ == "__main__":
    main()
