"""Hostile inputs cannot make a process grow: each runs in a child whose peak RSS is read.

Each file here once drove a process to more than a gigabyte: a 27 KB WAV claiming
13,800 s at 1 Hz (3.2 GB), 3 h 50 min of FLAC silence in 2.6 MB (3.3 GB), and an MP3
behind a 250 MB ID3v2 tag of Latin-1 text, which FFmpeg converts to UTF-8 in memory
(1.3 GB in the API's probe alone). They run through `hark transcribe` (the worker's
path: probe, decode, VAD, Whisper) and through `probe` in a process of its own (what
the API runs on every upload before queueing it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import av
import numpy as np
import pytest

# Every accepted input keeps every process under this.
MAX_RSS_BYTES = 1 << 30

SAMPLE_RATE = 16000
_PROBE = """
import json, sys
from hark.config import Settings
from hark.errors import HarkError
from hark.pipeline.media import probe
try:
    info = probe(sys.argv[1], max_seconds=Settings(_env_file=None).max_audio_seconds)
    print(json.dumps({"duration": info.duration}))
except HarkError as exc:
    print(json.dumps({"error_code": exc.code}))
"""


# Run between the test process and the child. Linux hands a process the peak RSS of the
# program it replaced at exec, so a child started straight from this (possibly large)
# test process would report at least this process's own peak; started from a small
# interpreter, it reports its own.
_LAUNCHER = """
import os, sys
child = os.fork()
if child == 0:
    os.execv(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(child, 0)
with open(sys.argv[1], "w") as out:
    out.write(str(usage.ru_maxrss * 1024))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def peak_rss(command: list[str], env: dict[str, str]) -> tuple[int, str, str, int]:
    """Run `command`; its exit status, output, and peak resident memory in bytes."""
    with tempfile.TemporaryDirectory() as folder:
        peak_file = Path(folder) / "peak"
        done = subprocess.run([sys.executable, "-c", _LAUNCHER, str(peak_file), *command],
                              capture_output=True, env=env, check=False)
        return (done.returncode, done.stdout.decode(), done.stderr.decode(),
                int(peak_file.read_text()))


@pytest.fixture(scope="module")
def child_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The `hark` command as installed: Whisper base from its package (`auto`)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HARK_")}
    env["HARK_DATA_DIR"] = str(tmp_path_factory.mktemp("hark-data"))
    env["HARK_MODEL_PACKAGES"] = "true"
    return env


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hostile")


def transcribe(path: Path, env: dict[str, str], out: Path) -> tuple[int, str, str, int]:
    return peak_rss([sys.executable, "-m", "hark", "transcribe", str(path), "-f", "json",
                     "-o", str(out)], env)


def probe_in_child(path: Path, env: dict[str, str]) -> tuple[dict[str, object], int]:
    code, stdout, stderr, peak = peak_rss([sys.executable, "-c", _PROBE, str(path)], env)
    assert code == 0, stderr
    return json.loads(stdout), peak


def test_a_wav_claiming_hours_at_one_hertz(inputs: Path, child_env: dict[str, str]) -> None:
    samples = 13_800
    data = np.zeros(samples, dtype="<i2").tobytes()
    path = inputs / "one-hertz.wav"
    path.write_bytes(b"RIFF" + (36 + len(data)).to_bytes(4, "little") + b"WAVE"
                     + b"fmt " + (16).to_bytes(4, "little")
                     + bytes.fromhex("0100 0100 01000000 02000000 0200 1000")
                     + b"data" + len(data).to_bytes(4, "little") + data)
    assert path.stat().st_size < 28_000
    code, _, stderr, peak = transcribe(path, child_env, inputs)
    assert code == 1 and "UNSUPPORTED_MEDIA" in stderr and "1 Hz" in stderr
    assert peak < MAX_RSS_BYTES
    result, peak = probe_in_child(path, child_env)
    assert result == {"error_code": "UNSUPPORTED_MEDIA"}
    assert peak < MAX_RSS_BYTES


def test_hours_of_flac_silence(inputs: Path, child_env: dict[str, str]) -> None:
    seconds = 3 * 3600 + 50 * 60
    path = inputs / "silence.flac"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("flac", rate=SAMPLE_RATE, layout="mono")
        minute = np.zeros((1, SAMPLE_RATE * 60), dtype=np.int16)
        for start in range(0, seconds, 60):
            frame = av.AudioFrame.from_ndarray(minute, format="s16", layout="mono")
            frame.sample_rate = SAMPLE_RATE
            frame.pts = start * SAMPLE_RATE
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    assert path.stat().st_size < 4 << 20
    code, _, stderr, peak = transcribe(path, child_env, inputs)
    assert code == 0, stderr
    transcript = json.loads((inputs / "silence.json").read_text())
    assert transcript["duration"] == seconds and transcript["segments"] == []
    assert peak < MAX_RSS_BYTES


def test_an_mp3_behind_a_250_mb_id3_tag(inputs: Path, child_env: dict[str, str]) -> None:
    audio = inputs / "tone.mp3"
    t = np.arange(SAMPLE_RATE * 3) / SAMPLE_RATE
    pcm = (np.sin(2 * np.pi * 440 * t) * 0.3 * 32767).astype(np.int16).reshape(1, -1)
    with av.open(str(audio), "w") as container:
        stream = container.add_stream("libmp3lame", rate=SAMPLE_RATE, layout="mono")
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))

    tag_bytes = 250 << 20
    frame_bytes = tag_bytes - 10
    path = inputs / "tagged.mp3"
    with path.open("wb") as out:  # written a megabyte at a time, never held whole
        out.write(b"ID3\x04\x00\x00" + _syncsafe(tag_bytes))
        out.write(b"TXXX" + _syncsafe(frame_bytes) + b"\x00\x00" + b"\x00")  # Latin-1
        block = b"\xe9" * (1 << 20)
        left = frame_bytes - 1
        while left > 0:
            left -= out.write(block[:left])
        out.write(audio.read_bytes())

    result, peak = probe_in_child(path, child_env)
    assert result["duration"] == pytest.approx(3.0, abs=0.1)
    assert peak < MAX_RSS_BYTES
    code, _, stderr, peak = transcribe(path, child_env, inputs)
    assert code == 0, stderr
    assert json.loads((inputs / "tagged.json").read_text())["duration"] == pytest.approx(
        3.0, abs=0.1)
    assert peak < MAX_RSS_BYTES


def _syncsafe(size: int) -> bytes:
    return bytes((size >> shift) & 0x7F for shift in (21, 14, 7, 0))


def test_a_small_child_of_a_large_process_reports_its_own_peak() -> None:
    """The measurement itself: this process grows past the limit, the child stays small."""
    ballast = np.ones(MAX_RSS_BYTES // 8 + (64 << 20), dtype=np.float64)
    code, _, _, peak = peak_rss([sys.executable, "-c", "pass"], dict(os.environ))
    assert code == 0 and ballast.sum() > 0
    assert peak < 200 << 20, peak
