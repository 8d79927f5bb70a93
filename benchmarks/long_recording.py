"""A long recording through `hark transcribe`: time and peak memory.

    python -m benchmarks.long_recording [--minutes 10 60 240] [--model auto] [--no-vad]

The recordings are English corpus clips back to back, written as 16 kHz WAV a clip at
a time (a four-hour recording is never held in memory here either); the model is the
default (`auto`, Whisper base from its package) unless named. Peak RSS is the largest
sum over the `hark` process and any decoder processes, sampled every 0.1 s.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import av
import numpy as np

from benchmarks.common import corpus_dir, english_manifest, machine, run_measured
from hark.pipeline.audio import SAMPLE_RATE, load_audio


def write_long_recording(seconds: float, path: Path) -> Path:
    """English corpus clips back to back, with half a second between them."""
    clips = [load_audio(corpus_dir() / str(r["audio"]))[1] for r in english_manifest()]
    gap = np.zeros(SAMPLE_RATE // 2, dtype=np.float32)
    left = int(seconds * SAMPLE_RATE)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=SAMPLE_RATE, layout="mono")
        while left > 0:
            for clip in clips:
                piece = np.concatenate([clip, gap])[:left]
                pcm = (np.clip(piece, -1, 1) * 32767).astype(np.int16).reshape(1, -1)
                frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
                frame.sample_rate = SAMPLE_RATE
                container.mux(stream.encode(frame))
                left -= piece.shape[0]
                if left <= 0:
                    break
        container.mux(stream.encode(None))
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, nargs="+", default=[10, 60])
    parser.add_argument("--model", default="auto")
    parser.add_argument("--no-vad", action="store_true",
                        help="decode with VAD off (faster-whisper's own sliding window)")
    args = parser.parse_args()
    print(f"machine: {machine()}, model {args.model}" + (", VAD off" if args.no_vad else ""))
    times: dict[float, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for minutes in args.minutes:
            audio = write_long_recording(minutes * 60, Path(tmp) / f"long-{minutes:g}min.wav")
            command = [sys.executable, "-m", "hark", "transcribe", str(audio), "-m", args.model,
                       "-l", "en", "-f", "json", "-o", tmp]
            result = run_measured(command + (["--no-vad"] if args.no_vad else []),
                                  env={"HARK_DATA_DIR": tmp})
            if result.returncode != 0:
                raise SystemExit(result.stderr)
            audio.unlink()
            times[minutes] = result.seconds
            print(f"{minutes:g} min: {result.seconds:.1f} s wall "
                  f"({minutes * 60 / result.seconds:.1f}x real time), "
                  f"peak RSS {result.peak_rss_bytes / 2**20:.0f} MiB", flush=True)
    if len(times) >= 2:
        (short, t_short), (long, t_long) = sorted(times.items())[0], sorted(times.items())[-1]
        print(f"time ratio {long:g}/{short:g} min: {t_long / t_short:.2f} "
              f"(linear would be {long / short:.2f})")


if __name__ == "__main__":
    main()
