"""Jobs over HTTP on a running Hark (`hark serve`, or API replicas of scaled mode): the
recordings the tests submit, submitting and waiting, and reading the JSON log."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from hark.pipeline.audio import SAMPLE_RATE, load_audio
from tests.support.common import wait_for
from tests.support.service import wav_bytes

FIXTURES = Path(__file__).parents[1] / "fixtures" / "conversations"
FINISHED = ("completed", "failed", "canceled")


# --- recordings ------------------------------------------------------------------------

def write_wav(path: Path, audio: np.ndarray) -> Path:
    path.write_bytes(wav_bytes(audio))
    return path


def conversation(name: str = "two_voices") -> np.ndarray:
    """A committed espeak-ng conversation, decoded to 16 kHz mono."""
    return load_audio(FIXTURES / f"{name}.ogg")[1]


def long_and_short(folder: Path) -> dict[str, Path]:
    """long: two_voices + three_voices (~68 s: ~10 s of work on 2 cores, long enough to
    kill or cancel mid-job); short: 2.5 s of speech, for jobs that should be quick."""
    two = conversation("two_voices")
    return {
        "long": write_wav(folder / "long.wav",
                          np.concatenate([two, conversation("three_voices")])),
        "short": write_wav(folder / "short.wav",
                           two[int(0.5 * SAMPLE_RATE): int(3.0 * SAMPLE_RATE)]),
    }


# --- HTTP ------------------------------------------------------------------------------

def submit(client: httpx.Client, path: Path, **fields: str) -> dict[str, Any]:
    with open(path, "rb") as media:
        response = client.post("/api/v1/jobs/upload", data=fields,
                               files={"file": (path.name, media, "application/octet-stream")})
    assert response.status_code == 202, response.text
    job: dict[str, Any] = response.json()
    return job


def get_job(client: httpx.Client, job_id: str) -> dict[str, Any]:
    response = client.get(f"/api/v1/jobs/{job_id}")
    assert response.status_code == 200, response.text
    job: dict[str, Any] = response.json()
    return job


def wait_job(client: httpx.Client, job_id: str, until: Callable[[dict[str, Any]], bool],
             timeout: float, what: str, *, tolerate_errors: bool = False) -> dict[str, Any]:
    """Poll the job until `until(job)`; with `tolerate_errors`, a failed request (the
    database away) is retried instead of failing the test."""
    job: dict[str, Any] = {}

    def reached() -> bool:
        nonlocal job
        try:
            job = get_job(client, job_id)
            return until(job)
        except (AssertionError, httpx.HTTPError):
            if not tolerate_errors:
                raise
            return False

    wait_for(reached, timeout, interval=0.1, message=lambda: f"job {job_id} not {what}: {job}")
    return job


def wait_finished(client: httpx.Client, job_id: str, timeout: float = 90,
                  **kwargs: bool) -> dict[str, Any]:
    return wait_job(client, job_id, lambda j: j["status"] in FINISHED, timeout, "finished",
                    **kwargs)


# --- logs ------------------------------------------------------------------------------

# multiprocessing's resource tracker (a helper process of the decoders' pool) writes
# plain-text warnings of its own about semaphores it removes when the process above it
# died without cleaning up: after a SIGKILL, and after SIGTERM too, since uvicorn
# re-raises the signal once it has shut down.
_TRACKER_LINES = ("resource_tracker: There appear to be", "warnings.warn('resource_tracker")


def log_records(text: str, *, tracker_warnings: bool = False) -> list[dict[str, Any]]:
    """Every line of a JSON log as an object; fails on a line that is not JSON (but the
    resource tracker's, with `tracker_warnings`: where a process was killed)."""
    records = []
    for line in text.splitlines():
        if not line.strip():
            continue
        if tracker_warnings and any(marker in line for marker in _TRACKER_LINES):
            continue
        try:
            records.append(json.loads(line))
        except ValueError:
            pytest.fail(f"a log line is not JSON: {line!r}")
    return records
