"""The service's own figures, measured against a real `hark serve`.

    python -m benchmarks.service [--jobs 20] [--seconds 10] [--connections 64,8]
                                 [--subscribers 500]
                                 [--upload-mib 500] [--only latency,status,events,upload]
                                 [--client auto|wrk|python] [--json out.json]

A server subprocess runs on a free loopback port with a temporary data directory,
anonymous access, one worker and WARNING logs (so logging stays out of the figures):
1. submit→running when idle: a one-second job submitted again and again, one at a
   time; seen by an SSE subscriber opened right after the 202, and as the job's own
   started_at − created_at;
2. status GET requests/s: keep-alive GETs of a completed job for `--seconds`, by
   `wrk` when installed (else a separate asyncio process), anonymous and with a key,
   with many connections and with few (many contend for the GIL in the thread pool);
3. event delivery to `--subscribers` SSE streams of one job (`benchmarks.service_load`);
4. a `--upload-mib` WAV upload to a second server started with `--no-worker`,
   generated while it is sent (never held in memory), with the server's RSS sampled
   every 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import wave
from collections.abc import Iterator
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil

from benchmarks.common import machine
from benchmarks.service_load import (
    events_benchmark,
    has_wrk,
    multipart_wav,
    percentiles,
    run_python,
    run_wrk,
)
from hark.pipeline.audio import SAMPLE_RATE, load_audio

MIB = 1024 * 1024
PARTS = ("latency", "status", "events", "upload")


# --- the server ----------------------------------------------------------------------

class Server:
    def __init__(self, home: Path, *, worker: bool = True, anonymous: bool = True) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port: int = probe.getsockname()[1]
        self.home = home
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("HARK_")}
        self.env.update(HARK_DATA_DIR=str(home / "data"),
                        HARK_ALLOW_ANONYMOUS="true" if anonymous else "false",
                        HARK_HOST="127.0.0.1", HARK_LOG_LEVEL="WARNING", HARK_WORKERS="1")
        command = [sys.executable, "-m", "hark", "serve", "--port", str(self.port)]
        self.log = (home / "server.log").open("wb")
        # cwd is the temporary folder so that no `.env` file steers the server.
        self.proc = subprocess.Popen(command + ([] if worker else ["--no-worker"]),
                                     env=self.env, cwd=home, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        self.process = psutil.Process(self.proc.pid)
        self._wait_ready()

    def _wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"hark serve exited with {self.proc.returncode}:\n{self.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base}/health/live", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        self.stop()
        raise SystemExit(f"hark serve did not answer within {timeout:.0f} s:\n{self.tail()}")

    def tail(self) -> str:
        self.log.flush()
        return (self.home / "server.log").read_text(errors="replace")[-3000:]

    def create_key(self, rate_limit: str = "unlimited") -> str:
        done = subprocess.run([sys.executable, "-m", "hark", "keys", "create", "--json",
                               "--name", "benchmark", "--rate-limit", rate_limit],
                              env=self.env, cwd=self.home,
                              capture_output=True, text=True, check=True)
        key: str = json.loads(done.stdout)["key"]
        return key

    def stop(self) -> None:
        children = self.process.children(recursive=True)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for child in children:  # workers die with the server; make sure of it
            with contextlib.suppress(psutil.Error):
                child.kill()
        self.log.close()


@contextlib.contextmanager
def running_server(home: Path, *, worker: bool = True,
                   anonymous: bool = True) -> Iterator[Server]:
    home.mkdir()
    server = Server(home, worker=worker, anonymous=anonymous)
    try:
        yield server
    finally:
        server.stop()


# --- media ---------------------------------------------------------------------------

def wav_bytes(samples: np.ndarray, rate: int = SAMPLE_RATE) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.astype(np.int16).tobytes())
    return buffer.getvalue()


def short_job() -> bytes:
    """One second of faint noise: no speech, so the job is over in a moment."""
    return wav_bytes(np.random.default_rng(1).normal(0, 20, SAMPLE_RATE))


def speech_sample() -> bytes:
    return (resources.files("hark") / "samples" / "welcome.ogg").read_bytes()


def long_speech(seconds: float) -> bytes:
    with resources.as_file(resources.files("hark") / "samples" / "welcome.ogg") as path:
        _, samples = load_audio(path)
    repeats = int(seconds * SAMPLE_RATE / samples.size) + 1
    return wav_bytes(np.clip(np.tile(samples, repeats) * 32767, -32768, 32767))


def submit(client: httpx.Client, media: bytes, name: str) -> tuple[str, float]:
    """The job id and the seconds the POST took."""
    started = time.perf_counter()
    response = client.post("/api/v1/jobs/upload", files={"file": (name, media)},
                           data={"model": "pocketsphinx"})
    elapsed = time.perf_counter() - started
    if response.status_code != 202:
        raise SystemExit(f"submission failed: {response.status_code} {response.text}")
    job_id: str = response.json()["id"]
    return job_id, elapsed


def wait_finished(client: httpx.Client, job_id: str, timeout: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(f"/api/v1/jobs/{job_id}").json()
        if job["status"] in ("completed", "failed", "canceled"):
            return job
        time.sleep(0.1)
    raise SystemExit(f"job {job_id} did not finish within {timeout:.0f} s")


# --- 1. submit→running when idle -----------------------------------------------------

def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def idle_latency(server: Server, jobs: int) -> dict[str, Any]:
    media = short_job()
    seen: list[float] = []
    recorded: list[float] = []
    posts: list[float] = []
    missed = 0
    with httpx.Client(base_url=server.base, timeout=60) as client:
        for index in range(jobs + 1):  # the first one warms the worker up, uncounted
            time.sleep(0.3)  # the worker is back waiting for work
            job_id, post_seconds = submit(client, media, "short.wav")
            answered = time.perf_counter()
            running_at = None
            outcome = None
            with client.stream("GET", f"/api/v1/jobs/{job_id}/events") as stream:
                for line in stream.iter_lines():
                    if not line.startswith("data: "):
                        continue
                    now = time.perf_counter()
                    event = json.loads(line[6:])
                    if running_at is None and (event["type"] == "progress"
                                               or event.get("status") == "running"):
                        running_at = now
                    if event["type"] in ("completed", "failed", "canceled"):
                        outcome = event["type"]
                        break
            if outcome != "completed":
                raise SystemExit(f"job {job_id} ended {outcome}: {wait_finished(client, job_id)}")
            job = client.get(f"/api/v1/jobs/{job_id}").json()
            if index == 0:
                continue
            posts.append(post_seconds)
            recorded.append((_parse_time(job["started_at"])
                             - _parse_time(job["created_at"])).total_seconds())
            if running_at is None:
                missed += 1  # finished before the stream opened: no running state seen
            else:
                seen.append(running_at - answered)
    return {"jobs": jobs, "sse_ms": _summary(seen), "server_ms": _summary(recorded),
            "post_ms": _summary(posts), "running_not_seen": missed}


def _summary(seconds: list[float]) -> dict[str, float]:
    p50, p95 = percentiles(seconds, 50, 95)
    return {"p50": p50 * 1000, "p95": p95 * 1000}


# --- 2. status GET requests/s --------------------------------------------------------

def status_load(server: Server, job_id: str, key: str | None, connections: int,
                seconds: float, client: str) -> dict[str, Any]:
    path = f"/api/v1/jobs/{job_id}"
    headers = [f"X-API-Key: {key}"] if key else []
    check = httpx.get(server.base + path, headers=dict(h.split(": ", 1) for h in headers))
    if check.status_code != 200:
        raise SystemExit(f"GET {path} answered {check.status_code}: {check.text}")
    use_wrk = client == "wrk" or (client == "auto" and has_wrk())
    server_cpu = sum(server.process.cpu_times()[:2])
    load_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    if use_wrk:
        result = run_wrk(server.base + path, headers, connections, seconds)
    else:
        result = run_python(server.port, path, headers, connections, seconds)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    served = max(result["requests"], 1)
    result["connections"] = connections
    result["server_cpu_us_per_request"] = (
        (sum(server.process.cpu_times()[:2]) - server_cpu) / served * 1e6)
    result["client_cpu_s"] = (after.ru_utime + after.ru_stime
                              - load_cpu.ru_utime - load_cpu.ru_stime)
    return result


# --- 4. a large upload ---------------------------------------------------------------

def large_upload(server: Server, mib: int) -> dict[str, Any]:
    samples: list[tuple[float, int, int]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            with contextlib.suppress(psutil.Error):
                main = server.process.memory_info().rss
                tree = main + sum(c.memory_info().rss
                                  for c in server.process.children(recursive=True))
                samples.append((time.perf_counter(), main, tree))
            stop.wait(0.05)

    data_bytes = mib * MIB - (mib * MIB) % 4
    with httpx.Client(base_url=server.base, timeout=600) as client:
        # A small upload first, so that what a first request loads is in the baseline.
        warm_id, _ = submit(client, short_job(), "warm.wav")
        client.delete(f"/api/v1/jobs/{warm_id}", params={"purge": "true"})
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        time.sleep(1.0)
        size, body = multipart_wav(data_bytes, "hark-benchmark-boundary")
        started = time.perf_counter()
        response = client.post("/api/v1/jobs/upload", content=body, headers={
            "Content-Type": "multipart/form-data; boundary=hark-benchmark-boundary",
            "Content-Length": str(size)})
        finished = time.perf_counter()
        time.sleep(0.5)
        stop.set()
        sampler.join()
        if response.status_code != 202:
            raise SystemExit(f"the upload failed: {response.status_code} {response.text}")
        job = response.json()
        client.delete(f"/api/v1/jobs/{job['id']}", params={"purge": "true"}).raise_for_status()
    before = [s for s in samples if s[0] < started]
    base_main, base_tree = (float(np.median([s[i] for s in before])) for i in (1, 2))
    peak_main, peak_tree = (max(s[i] for s in samples) for i in (1, 2))
    return {"mib": data_bytes / MIB, "audio_minutes": job["duration"] / 60,
            "seconds": finished - started, "mib_per_s": data_bytes / MIB / (finished - started),
            "samples": len(samples),
            "main_mib": {"baseline": base_main / MIB, "peak": peak_main / MIB,
                         "growth": (peak_main - base_main) / MIB},
            "tree_mib": {"baseline": base_tree / MIB, "peak": peak_tree / MIB,
                         "growth": (peak_tree - base_tree) / MIB}}


# --- the report ----------------------------------------------------------------------

def _mark(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def report(results: dict[str, Any]) -> None:
    if "latency" in results:
        r = results["latency"]
        sse, db = r["sse_ms"], r["server_ms"]
        print(f"1. submit→running when idle ({r['jobs']} jobs), target < 100 ms:")
        print(f"   SSE after the 202: median {sse['p50']:.1f} ms, p95 {sse['p95']:.1f} ms"
              f"   {_mark(sse['p95'] < 100)}")
        print(f"   started_at − created_at: median {db['p50']:.1f} ms, p95 {db['p95']:.1f} ms"
              f"   {_mark(db['p95'] < 100)}")
        print(f"   (POST round trip median {r['post_ms']['p50']:.1f} ms; running state not "
              f"seen on {r['running_not_seen']} jobs that ended before the stream opened)")
    for r in results.get("status", []):
        print(f"2. status GET ({r['auth']}, {r['connections']} connections), target ≥ 2000/s: "
              f"{r['rps']:.0f} requests/s   {_mark(r['rps'] >= 2000)}")
        print(f"   {r['client']}: p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, "
              f"{r['non_2xx']} non-2xx; server CPU {r['server_cpu_us_per_request']:.0f} "
              f"µs/request, load generator CPU {r['client_cpu_s']:.1f} s")
    if "events" in results:
        r = results["events"]
        run, cancel = r["run"], r["cancel"]
        print(f"3. {r['subscribers']} event subscribers to one job (connected in "
              f"{r['connect_s']:.1f} s), target p99 < 200 ms:")
        print(f"   worker events, after the first subscriber: p50 {run['p50_ms']:.1f} ms, "
              f"p99 {run['p99_ms']:.1f} ms, max {run['max_ms']:.1f} ms   "
              f"{_mark(run['p99_ms'] < 200)}")
        print(f"   ({run['events']} events, {run['events_seen_by_all']} seen by all, "
              f"{run['deliveries']} deliveries, {run['not_ended']} streams not ended)")
        print(f"   canceled, after our DELETE was sent: p50 {cancel['p50_ms']:.1f} ms, "
              f"p99 {cancel['p99_ms']:.1f} ms, max {cancel['max_ms']:.1f} ms   "
              f"{_mark(cancel['p99_ms'] < 200)}")
        print(f"   ({cancel['received']} received; the DELETE took {cancel['delete_ms']:.1f} ms)")
    if "upload" in results:
        r = results["upload"]
        main, tree = r["main_mib"], r["tree_mib"]
        print(f"4. {r['mib']:.0f} MiB upload ({r['audio_minutes']:.0f} min of 48 kHz stereo "
              f"WAV), target < 300 MB growth: {r['seconds']:.1f} s, {r['mib_per_s']:.0f} MiB/s")
        print(f"   server RSS {main['baseline']:.0f} → peak {main['peak']:.0f} MiB: growth "
              f"{main['growth']:.0f} MiB   {_mark(main['growth'] * MIB < 300e6)}")
        print(f"   with children {tree['baseline']:.0f} → peak {tree['peak']:.0f} MiB: growth "
              f"{tree['growth']:.0f} MiB ({r['samples']} samples every 50 ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=lambda v: [int(c) for c in v.split(",")],
                        default=[64, 8], help="status GET connections, comma-separated")
    parser.add_argument("--subscribers", type=int, default=500)
    parser.add_argument("--upload-mib", type=int, default=500)
    parser.add_argument("--client", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--only", default=",".join(PARTS), help="comma-separated parts")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    parts = set(args.only.split(","))
    if parts - set(PARTS):
        parser.error(f"--only takes {', '.join(PARTS)}")
    results: dict[str, Any] = {"machine": machine(), "cpu_count": os.cpu_count(),
                               "load_average": os.getloadavg()}
    print(f"machine: {results['machine']}; load average {results['load_average'][0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="hark-bench-") as tmp:
        if parts & {"latency", "status", "events"}:
            with running_server(Path(tmp) / "serve") as server:
                if "latency" in parts:
                    results["latency"] = idle_latency(server, args.jobs)
                if "status" in parts:
                    with httpx.Client(base_url=server.base, timeout=60) as client:
                        job_id, _ = submit(client, short_job(), "status.wav")
                        if wait_finished(client, job_id)["status"] != "completed":
                            raise SystemExit(f"job {job_id} did not complete")
                    # The same key twice: not limited, and counted against a rate it
                    # never reaches (what counting each request costs).
                    unlimited = server.create_key()
                    counted = server.create_key(rate_limit="1000000000/minute")
                    results["status"] = [
                        {"auth": auth, **status_load(server, job_id, header, connections,
                                                     args.seconds, args.client)}
                        for connections in args.connections
                        for auth, header in (("anonymous", None), ("API key", unlimited),
                                             ("API key, rate counted", counted))]
                if "events" in parts:
                    results["events"] = asyncio.run(events_benchmark(
                        "127.0.0.1", server.port, {}, long_speech(180), speech_sample(),
                        args.subscribers))
        if "upload" in parts:
            with running_server(Path(tmp) / "upload", worker=False) as server:
                results["upload"] = large_upload(server, args.upload_mib)
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
