"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import psutil

from hark.pipeline.audio import SAMPLE_RATE, load_audio


def corpus_dir() -> Path:
    configured = os.environ.get("HARK_CORPUS_DIR")
    path = Path(configured) if configured else Path(__file__).parents[2] / "shared" / "corpus"
    if not path.is_dir():
        raise SystemExit(f"speech corpus not found at {path}; set HARK_CORPUS_DIR")
    return path


def english_manifest() -> list[dict[str, object]]:
    rows = [json.loads(line) for line in
            (corpus_dir() / "asr" / "manifest.jsonl").read_text().splitlines() if line.strip()]
    return [r for r in rows if r.get("language") == "en"]


def machine() -> str:
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}")


def write_wav(path: Path, samples: np.ndarray) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=SAMPLE_RATE, layout="mono")
        step = SAMPLE_RATE * 60
        for start in range(0, samples.shape[0], step):
            pcm = (np.clip(samples[start:start + step], -1, 1) * 32767).astype(np.int16)
            frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = SAMPLE_RATE
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def long_recording(seconds: float, path: Path) -> Path:
    """English corpus clips back to back, with half a second between them."""
    clips = [load_audio(corpus_dir() / str(r["audio"]))[1] for r in english_manifest()]
    gap = np.zeros(SAMPLE_RATE // 2, dtype=np.float32)
    pieces: list[np.ndarray] = []
    total = 0
    target = int(seconds * SAMPLE_RATE)
    while total < target:
        for clip in clips:
            pieces += [clip, gap]
            total += clip.shape[0] + gap.shape[0]
            if total >= target:
                break
    return write_wav(path, np.concatenate(pieces)[:target])


@dataclass
class RunResult:
    seconds: float
    peak_rss_bytes: int
    returncode: int
    stdout: str
    stderr: str


def run_measured(command: list[str], env: dict[str, str] | None = None) -> RunResult:
    """Run a command; wall time and the peak summed RSS of it and all its children."""
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    peak = 0
    done = threading.Event()

    def poll() -> None:
        nonlocal peak
        parent = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                tree = [parent, *parent.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
            except psutil.Error:
                pass
            time.sleep(0.1)

    watcher = threading.Thread(target=poll, daemon=True)
    watcher.start()
    stdout, stderr = proc.communicate()
    elapsed = time.perf_counter() - started
    done.set()
    watcher.join()
    return RunResult(elapsed, peak, proc.returncode, stdout, stderr)
