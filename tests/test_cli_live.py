"""`hark live` on a corpus recording: from a file, as raw PCM or a container on standard
input, from a microphone (a capture device fed from a file), and sent to a server."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soxr
import srt
from typer.testing import CliRunner

from hark.cli import app
from hark.config import get_settings
from hark.evaluation.scoring import count_errors
from hark.pipeline.audio import SAMPLE_RATE, load_audio
from tests.support.common import wait_for
from tests.support.encode import encode
from tests.support.server import HarkServer, clean_env, create_key, hark_command

pytestmark = [pytest.mark.corpus, pytest.mark.slow]

REFERENCE = ("and so my fellow americans ask not what your country can do for you ask what "
             "you can do for your country")
FINAL = re.compile(r"^\[\s*([\d.]+) → \s*([\d.]+)\] (.+)$")


@pytest.fixture
def whisper_env(cli_env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HARK_MODEL_PACKAGES", "true")
    get_settings.cache_clear()
    return cli_env


def finals(output: str) -> list[tuple[float, float, str]]:
    found = [FINAL.match(line) for line in output.splitlines()]
    return [(float(m[1]), float(m[2]), m[3]) for m in found if m]


def test_a_file_is_printed_phrase_by_phrase_and_written(whisper_env: Path, corpus_dir: Path,
                                                        tmp_path: Path) -> None:
    out = tmp_path / "speech.srt"
    result = CliRunner().invoke(app, ["live", str(corpus_dir / "asr" / "jfk_inaugural_1961.flac"),
                                      "-m", "tiny.en", "-l", "en", "-o", str(out)])
    assert result.exit_code == 0, result.output
    lines = finals(result.stdout)
    assert len(lines) >= 2
    assert [s for s, _, _ in lines] == sorted(s for s, _, _ in lines)
    text = " ".join(t for _, _, t in lines)
    assert count_errors(REFERENCE, text, "en").rate <= 0.15, text
    cues = list(srt.parse(out.read_text()))
    assert [c.content for c in cues] == [t for _, _, t in lines]


def test_standard_input_at_eight_kilohertz(whisper_env: Path, corpus_dir: Path) -> None:
    audio = load_audio(corpus_dir / "asr" / "jfk_inaugural_1961.flac")[1]
    narrow = soxr.resample(audio, SAMPLE_RATE, 8000)
    pcm = (np.clip(narrow, -1, 1) * 32767).astype("<i2").tobytes()
    result = CliRunner().invoke(app, ["live", "-", "-m", "tiny.en", "-l", "en",
                                      "--sample-rate", "8000"], input=pcm)
    assert result.exit_code == 0, result.output
    text = " ".join(t for _, _, t in finals(result.stdout))
    assert count_errors(REFERENCE, text, "en").rate <= 0.2, text
    assert max(e for _, e, _ in finals(result.stdout)) <= len(narrow) / 8000 + 0.1


@pytest.mark.parametrize(("args", "code", "message"), [
    (["-", "--sample-rate", "5"], 2, "--sample-rate must be one of"),
    (["x.wav", "-o", "out.docx"], 2, "cannot tell the format"),
    (["missing.wav", "-m", "pocketsphinx"], 1, "FILE_NOT_FOUND"),
    (["-", "-m", "pocketsphinx", "-l", "de"], 1, "UNSUPPORTED_LANGUAGE"),
    (["-", "--encoding", "opus"], 2, "--encoding must be one of"),
    (["-", "--save"], 2, "give --server"),
    (["-", "--server", "ftp://example.com"], 1, "--server must be an http(s) URL"),
    (["-", "--server", "http://127.0.0.1:1"], 1, "SERVER_UNREACHABLE"),
    ([], 2, "or --mic (one of them)"),
    (["x.wav", "--mic"], 2, "or --mic (one of them)"),
])
def test_bad_invocations_fail_with_a_message(cli_env: Path, args: list[str], code: int,
                                             message: str) -> None:
    result = CliRunner().invoke(app, ["live", *args], input=b"")
    assert result.exit_code == code, result.output
    assert message in result.output


def test_a_webm_stream_on_standard_input(whisper_env: Path, corpus_dir: Path) -> None:
    audio = load_audio(corpus_dir / "asr" / "jfk_inaugural_1961.flac")[1]
    result = CliRunner().invoke(app, ["live", "-", "-m", "tiny.en", "-l", "en",
                                      "--encoding", "container"], input=encode(audio, "webm"))
    assert result.exit_code == 0, result.output
    text = " ".join(t for _, _, t in finals(result.stdout))
    assert count_errors(REFERENCE, text, "en").rate <= 0.15, text


def test_a_stream_sent_to_a_server_and_saved_as_a_job(tmp_path: Path,
                                                      corpus_dir: Path) -> None:
    path = corpus_dir / "asr" / "jfk_inaugural_1961.flac"
    key = create_key(tmp_path / "data")["key"]
    with HarkServer(tmp_path / "data", tmp_path / "logs", workers=1) as server:
        server.start()
        out = tmp_path / "live.json"
        result = CliRunner().invoke(app, ["live", str(path), "--server", server.base_url,
                                          "--key", key, "-l", "en", "--save", "-o", str(out)])
        assert result.exit_code == 0, result.output
        text = " ".join(t for _, _, t in finals(result.stdout))
        assert count_errors(REFERENCE, text, "en").rate <= 0.15, text
        saved = re.search(r"saved as job ([\w-]+): (\S+)", result.stderr)
        assert saved and saved[2] == f"{server.base_url}/#/jobs/{saved[1]}", result.stderr
        written = json.loads(out.read_text())
        assert "tiny.en" in written["model"] and written["language"] == "en"
        assert [s["text"] for s in written["segments"]] == [t for _, _, t in finals(
            result.stdout)]
        # The server keeps the whole recording and transcribes it again as a job.
        with server.client(key=key) as client:
            def finished() -> dict[str, Any] | None:
                job: dict[str, Any] = client.get(f"/api/v1/jobs/{saved[1]}").json()
                return job if job["status"] in ("completed", "failed") else None

            job = wait_for(finished, timeout=120, interval=0.5)
            assert job and job["status"] == "completed", job
            transcript = client.get(f"/api/v1/jobs/{saved[1]}/result").json()
        assert count_errors(REFERENCE, transcript["text"], "en").rate <= 0.15
        # A wrong key is refused by name.
        refused = CliRunner().invoke(app, ["live", str(path), "--server", server.base_url,
                                           "--key", "hk_wrong"])
        assert refused.exit_code == 1 and "UNAUTHORIZED" in refused.output


def test_the_command_line_does_not_load_prometheus() -> None:
    """`hark worker` turns on Prometheus's multiprocess mode before the library is first
    imported; anything the command imports earlier would leave its pool's counts unseen."""
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, hark.cli; print('prometheus_client' in sys.modules)"],
        capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "False"


def portaudio_or_skip() -> None:
    import os

    try:
        import sounddevice  # noqa: F401
    except OSError as exc:  # the library, not the module, is missing
        reason = f"PortAudio is not installed ({exc}): apt-get install libportaudio2"
        if os.environ.get("HARK_REQUIRE_SERVICES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)


ALSA_FILE_CAPTURE = """\
pcm.!default {{ type plug slave.pcm "speech" }}
pcm.speech {{ type file slave.pcm "null" file "/dev/null" infile "{raw}" format "raw" }}
"""


def test_the_microphone_through_portaudio(corpus_dir: Path, tmp_path: Path) -> None:
    """`hark live --mic` records through PortAudio and ALSA from a capture device whose
    samples come from a file (ALSA's file plugin): the real recording path, with
    speech in place of a microphone. Ctrl-C ends it the normal way: the transcript
    is written and the exit status is 0."""
    portaudio_or_skip()
    audio = load_audio(corpus_dir / "asr" / "jfk_inaugural_1961.flac")[1]
    raw = tmp_path / "speech.raw"
    np.rint(np.clip(audio, -1, 1) * 32767).astype("<i2").tofile(raw)
    (tmp_path / ".asoundrc").write_text(ALSA_FILE_CAPTURE.format(raw=raw))
    out = tmp_path / "mic.srt"
    env = clean_env(tmp_path / "data", {"HOME": str(tmp_path), "HARK_MODEL_PACKAGES": "true"})
    process = subprocess.Popen(hark_command("live", "--mic", "-l", "en", "-o", str(out)),
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    lines: list[str] = []
    # Should the last phrase never be heard, Ctrl-C comes anyway.
    deadline = threading.Timer(90, process.send_signal, [signal.SIGINT])
    deadline.start()
    try:
        assert process.stdout is not None
        for line in process.stdout:  # finals, as they come
            lines.append(line)
            if "for your country" in line.lower():  # the last phrase
                break
        process.send_signal(signal.SIGINT)
        rest, errors = process.communicate(timeout=60)
    finally:
        deadline.cancel()
        process.kill()
    assert process.returncode == 0, errors
    text = " ".join(t for _, _, t in finals("".join(lines) + rest))
    assert count_errors(REFERENCE, text, "en").rate <= 0.2, text
    assert [c.content for c in srt.parse(out.read_text())] == \
        [t for _, _, t in finals("".join(lines) + rest)]


def test_no_microphone_is_a_clear_error(cli_env: Path, tmp_path: Path) -> None:
    portaudio_or_skip()
    # An ALSA configuration with no capture device at all.
    (tmp_path / ".asoundrc").write_text("pcm.!default { type null }\n")
    result = subprocess.run(hark_command("live", "--mic", "--device", "no such device"),
                            env=clean_env(cli_env, {"HOME": str(tmp_path)}),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "NO_MICROPHONE" in result.stderr and "no such device" in result.stderr
