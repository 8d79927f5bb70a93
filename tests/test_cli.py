"""`hark` end to end, as a person at a terminal runs it."""

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import srt
from typer.testing import CliRunner

from hark.cli import app
from hark.pipeline.transcript import Transcript
from tests.support.http_servers import ScriptedServer

runner = CliRunner()


def hark(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hark", *args], capture_output=True, text=True, timeout=300,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.corpus
def test_transcribe_writes_every_format_and_survives_a_bad_file(
    cli_env: Path, corpus_dir: Path, tmp_path: Path
) -> None:
    good = corpus_dir / "asr" / "librispeech_1272-128104-0000.wav"
    bad = tmp_path / "notes.wav"
    bad.write_text("this is not audio\n")
    out = tmp_path / "out"
    result = hark("transcribe", str(bad), str(good), "-f", "json,srt,vtt,txt,tsv",
                  "-o", str(out), env={"HARK_DATA_DIR": str(cli_env)})
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "notes.wav" in errors[0] and "UNSUPPORTED_MEDIA" in errors[0]
    assert "Model: pocketsphinx" in result.stderr
    # No language given to an English-only engine: the person is told, once per file.
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "recognises English only" in warnings[0]
    stem = good.stem
    for fmt in ("json", "srt", "vtt", "txt", "tsv"):
        assert (out / f"{stem}.{fmt}").is_file()
    assert not (out / "notes.json").exists()
    transcript = Transcript.from_dict(json.loads((out / f"{stem}.json").read_text()))
    assert transcript.model == "pocketsphinx/en-us"
    assert transcript.warnings == [warnings[0].split(": ", 2)[2]]
    assert "middle classes" in transcript.text.lower()
    cues = list(srt.parse((out / f"{stem}.srt").read_text()))
    assert cues and cues[-1].end.total_seconds() <= transcript.duration + 0.01


def test_transcribe_to_stdout_and_option_errors(cli_env: Path, tmp_path: Path) -> None:
    from hark.cli.transcribe import sample_path

    result = runner.invoke(app, ["transcribe", str(sample_path()), "-f", "json"])
    assert result.exit_code == 0, result.output
    transcript = Transcript.from_dict(json.loads(result.stdout))
    assert transcript.segments and transcript.duration == pytest.approx(9.4, abs=0.3)

    bad_language = runner.invoke(app, ["transcribe", str(sample_path()), "-l", "xx"])
    assert bad_language.exit_code == 2
    assert "Unknown language 'xx'" in bad_language.stderr
    # The valid codes are listed, so the fix is in the message.
    assert "Valid codes: af, am, ar," in bad_language.stderr and " de, " in bad_language.stderr
    bad_format = runner.invoke(app, ["transcribe", str(sample_path()), "-f", "docx"])
    assert bad_format.exit_code == 2 and "unknown output format" in bad_format.stderr
    # A language by its name; pocketsphinx (the fallback here) refuses German by code.
    german = runner.invoke(app, ["transcribe", str(sample_path()), "-l", "German"])
    assert german.exit_code == 1 and "UNSUPPORTED_LANGUAGE" in german.stderr
    assert "language 'de'" in german.stderr
    rttm = runner.invoke(app, ["transcribe", str(sample_path()), "-f", "txt,rttm"])
    assert rttm.exit_code == 2 and "add --diarize" in rttm.stderr and not rttm.stdout
    missing = runner.invoke(app, ["transcribe", str(tmp_path / "nope.mp3")])
    assert missing.exit_code == 1 and "nope.mp3" in missing.stderr
    assert "FILE_NOT_FOUND" in missing.stderr


def test_demo_prints_a_transcript(cli_env: Path) -> None:
    result = hark("demo", env={"HARK_DATA_DIR": str(cli_env)})
    assert result.returncode == 0, result.stderr
    words = result.stdout.lower().split()
    expected = {"hello", "welcome", "recognition", "fox", "jumps", "lazy", "dog"}
    assert len(expected & set(words)) >= 5, words


def test_models_list_and_rm(cli_env: Path, tiny_whisper_dir: Path) -> None:
    models = cli_env / "models"
    shutil.copytree(tiny_whisper_dir, models / "tiny")
    listed = runner.invoke(app, ["models", "list"])
    assert listed.exit_code == 0
    rows = {line.split()[0]: line for line in listed.stdout.splitlines()[1:] if line.strip()}
    assert "tiny" in rows and "*" in rows["tiny"], "auto picks the installed Whisper model"
    assert "pocketsphinx" in rows
    removed = runner.invoke(app, ["models", "rm", "tiny"])
    assert removed.exit_code == 0 and not (models / "tiny").exists()
    again = runner.invoke(app, ["models", "rm", "tiny"])
    assert again.exit_code == 1 and "MODEL_NOT_INSTALLED" in again.stderr


@pytest.fixture
def off_machine() -> Iterator[ScriptedServer]:
    """A proxy that forwards nothing: what a `hark` process sends through it would
    have left the machine (it records `CONNECT huggingface.co:443`, say)."""
    with ScriptedServer("127.0.0.1") as trap:
        yield trap


def hub_env(hub_url: str, trap: ScriptedServer, home: Path) -> dict[str, str]:
    """A `hark models pull` with no way off this machine: the hub is `hub_url`, and any
    request elsewhere goes to `trap` instead (tests run without internet)."""
    proxy = trap.url("").rstrip("/")
    proxies = {name: proxy for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")}
    return {
        "HARK_HF_ENDPOINT": hub_url,
        # Hugging Face's own files (its cache, what it remembers) stay in the test's.
        "HF_HOME": str(home),
        **proxies, **{name.lower(): value for name, value in proxies.items()},
        "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
    }


def test_models_pull_reports_an_unreachable_hub(cli_env: Path, off_machine: ScriptedServer,
                                                tmp_path: Path) -> None:
    from tests.support.fake_hub import unreachable_endpoint

    env = hub_env(unreachable_endpoint(), off_machine, tmp_path / "hf-home")
    result = hark("models", "pull", "tiny", env={"HARK_DATA_DIR": str(cli_env), **env})
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "could not be reached" in result.stderr and "MODEL_DOWNLOAD_FAILED" in result.stderr
    assert not (cli_env / "models" / "tiny").exists()
    assert off_machine.paths() == []


def test_pull_from_a_hub_then_transcribe_with_it(cli_env: Path, tiny_whisper_dir: Path,
                                                 off_machine: ScriptedServer,
                                                 tmp_path: Path) -> None:
    from hark.pipeline.model_store import WHISPER_REPOS
    from tests.support.fake_hub import FakeHub

    files = {p.name: p.read_bytes() for p in tiny_whisper_dir.iterdir() if p.is_file()}
    env = {"HARK_DATA_DIR": str(cli_env)}
    with FakeHub() as hub:
        hub.add_repo(WHISPER_REPOS["tiny"], files)
        env |= hub_env(hub.url, off_machine, tmp_path / "hf-home")
        pulled = hark("models", "pull", "tiny", env=env)
        assert pulled.returncode == 0, pulled.stderr
        assert not hub.unexpected
    assert off_machine.paths() == []
    installed = cli_env / "models" / "tiny"
    # The model's files, and the note of where they came from.
    assert sorted(p.name for p in installed.iterdir()) == sorted([*files, ".hark-source.json"])
    assert json.loads((installed / ".hark-source.json").read_text())["source"] == "hub"
    assert (installed / "model.bin").read_bytes() == files["model.bin"]

    from hark.cli.transcribe import sample_path

    result = hark("transcribe", str(sample_path()), "-f", "json", "--beam-size", "1",
                  "--temperature", "0", env=env)
    assert result.returncode == 0, result.stderr
    assert "Model: tiny (best installed Whisper model)" in result.stderr
    assert json.loads(result.stdout)["model"] == "faster-whisper/tiny"
    assert off_machine.paths() == []


def test_worker_refuses_a_taken_metrics_port(tmp_path: Path) -> None:
    import socket

    # Metrics folders left by a killed worker and by a live one.
    gone = subprocess.Popen(["true"])
    gone.wait()
    orphaned = tmp_path / f"hark-worker-metrics-{gone.pid}-x1"
    in_use = tmp_path / f"hark-worker-metrics-{os.getpid()}-x2"
    for folder in (orphaned, in_use):
        folder.mkdir()
        (folder / "counter_1.db").write_bytes(b"")
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = hark("worker", "--metrics-port", str(port), env={
            "HARK_BROKER_URL": "redis://127.0.0.1:1/0", "HARK_DATA_DIR": str(tmp_path / "data"),
            "TMPDIR": str(tmp_path)})
    assert result.returncode == 2, result.stderr
    assert f"cannot serve worker metrics on port {port}" in result.stderr
    assert "--metrics-port" in result.stderr and "Traceback" not in result.stderr
    # Its own metrics folder went with the worker, and so did the killed worker's.
    assert [p.name for p in tmp_path.iterdir()] == [in_use.name]


def test_every_option_of_every_command_is_explained_without_type_noise() -> None:
    import typer.main

    group = typer.main.get_command(app)
    commands: list[tuple[str, Any]] = []

    def walk(prefix: str, command: Any) -> None:
        for name, sub in getattr(command, "commands", {}).items():
            walk(f"{prefix} {name}", sub)
        if not getattr(command, "commands", None):
            commands.append((prefix, command))

    walk("hark", group)
    assert len(commands) >= 15
    for name, command in commands:
        assert command.help, f"{name} has no description"
        for param in command.params:
            if param.param_type_name == "option" and param.name != "help":
                assert param.help, f"{name} {param.opts[0]} has no help text"
        result = runner.invoke(app, [*name.split()[1:], "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, (name, result.output)
        assert not re.search(r"<(str|bool|int|float|path|list\[[^]]*\])>", result.output), (
            name, result.output)
