"""Scaled mode's figures, measured on real process trees.

    python -m benchmarks.scaled [--concurrency 1,2] [--seconds 10] [--connections 64,8]
                                [--kills 3] [--only throughput,status,redelivery]
                                [--json out.json]

The stack is the one the tests use (`tests.support.scaled`): a private redis-server,
a moto S3 server in this process, a throwaway database on the PostgreSQL server
($HARK_TEST_POSTGRES_URL, else postgresql://postgres@127.0.0.1:5432/test), one
`hark serve --no-worker` (WARNING logs, so logging stays out of the figures) and
`hark worker` processes with HARK_ASR_PROCESSES=1 (one decoder process per job).

1. throughput: the English items of the corpus (../shared/corpus or HARK_CORPUS_DIR)
   submitted at once, in manifest order, `--rounds` times over (2: a batch's tail, one
   process finishing the last job while the other idles, weighs less), to a worker
   with `--concurrency 1`, then to
   one with `--concurrency 2` (after one warm-up job per pool process, so model loads
   are not counted); jobs per minute from the first job's created_at to the last one's
   finished_at. Target: ≥ 1.8× with 2 on 2 cores.
2. status GET requests/s of a completed job, answered from PostgreSQL, by `wrk` when
   installed (else a Python load generator), anonymous and with an API key.
3. redelivery: a ~60 s job on a one-process worker; the pool process running it is
   SIGKILLed mid-transcription; time until the job's row says running again with
   attempts 2 (polled every 20 ms). `--kills` times. Then the whole worker is
   SIGKILLed once and a new one started: time until the job runs again (lease expiry
   plus a reconciler pass).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from tests.support.jobs import FINISHED
from tests.support.s3 import TEST_CREDENTIALS, MotoS3Server
from tests.support.scaled import ScaledStack, WorkerProcess, worker_pid
from tests.support.server import clean_env, hark_command

from benchmarks.common import corpus_dir, long_recording, machine
from benchmarks.service_load import has_wrk, run_python, run_wrk
from hark.db import make_engine
from hark.evaluation.asr import read_manifest

PARTS = ("throughput", "status", "redelivery")
POSTGRES_SERVER_URL = os.environ.get(
    "HARK_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
# The reconciler at its defaults (the tests run it faster): its duplicate messages would
# add work to the throughput runs, and its interval is part of the recovery figure.
BENCH_ENV = {"HARK_LOG_LEVEL": "WARNING", "HARK_RECONCILE_SECONDS": "15",
             "HARK_RESEND_AFTER_SECONDS": "60"}


# --- the stack -------------------------------------------------------------------------

@contextmanager
def throwaway_database() -> Iterator[str]:
    admin = make_engine(POSTGRES_SERVER_URL, isolation_level="AUTOCOMMIT")
    name = f"hark_bench_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        yield make_engine(POSTGRES_SERVER_URL).url.set(database=name).render_as_string(
            hide_password=False)
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


@contextmanager
def scaled_stack(root: Path) -> Iterator[ScaledStack]:
    os.environ.update(TEST_CREDENTIALS)
    with MotoS3Server() as s3, throwaway_database() as url, \
            ScaledStack(root, url, s3=s3, extra_env=BENCH_ENV) as stack:
        stack.api()
        yield stack


def submit(client: httpx.Client, path: Path) -> str:
    with open(path, "rb") as media:
        response = client.post("/api/v1/jobs/upload",
                               files={"file": (path.name, media, "application/octet-stream")})
    if response.status_code != 202:
        raise SystemExit(f"submission of {path.name} answered {response.status_code}: "
                         f"{response.text}")
    job_id: str = response.json()["id"]
    return job_id


def wait_all(client: httpx.Client, job_ids: list[str], timeout: float) -> list[dict[str, Any]]:
    """Wait for the jobs with one list request per second (polling each job would load
    the API, and the machine, more than the jobs' own bookkeeping does)."""
    deadline = time.monotonic() + timeout
    wanted = set(job_ids)
    while True:
        response = client.get("/api/v1/jobs", params={"limit": 200})
        response.raise_for_status()
        jobs = {j["id"]: j for j in response.json()["items"] if j["id"] in wanted}
        if len(jobs) < len(wanted):
            raise SystemExit("more jobs than one page of the list; use fewer")
        if all(j["status"] in FINISHED for j in jobs.values()):
            break
        if time.monotonic() > deadline:
            left = sum(j["status"] not in FINISHED for j in jobs.values())
            raise SystemExit(f"{left} jobs not finished after {timeout:.0f} s")
        time.sleep(1.0)
    failed = [j for j in jobs.values() if j["status"] != "completed"]
    if failed:
        raise SystemExit(f"{len(failed)} jobs did not complete: {failed[0]}")
    return [jobs[j] for j in job_ids]


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# --- 1. throughput ---------------------------------------------------------------------

def throughput(stack: ScaledStack, concurrency: int, items: list[Path],
               rounds: int) -> dict[str, Any]:
    worker = stack.worker(concurrency=concurrency)
    try:
        with stack.apis[0].client(timeout=60) as client:
            # One warm-up job per pool process: each loads its own decoder.
            shortest = min(items, key=lambda p: p.stat().st_size)
            wait_all(client, [submit(client, shortest) for _ in range(concurrency)], 120)
            job_ids = [submit(client, path) for _ in range(rounds) for path in items]
            jobs = wait_all(client, job_ids, 900)
    finally:
        worker.stop()
    started = min(_time(j["created_at"]) for j in jobs)
    finished = max(_time(j["finished_at"]) for j in jobs)
    seconds = (finished - started).total_seconds()
    audio = sum(float(j["duration"] or 0.0) for j in jobs)
    return {"concurrency": concurrency, "rounds": rounds, "jobs": len(jobs), "seconds": seconds,
            "jobs_per_minute": len(jobs) / seconds * 60, "audio_seconds": audio,
            "real_time_factor": audio / seconds}


# --- 2. status GETs --------------------------------------------------------------------

def create_key(stack: ScaledStack) -> str:
    home = stack.root / "keys"
    home.mkdir(exist_ok=True)
    done = subprocess.run(hark_command("keys", "create", "--name", "bench", "--json"),
                          env=clean_env(home, stack.env), cwd=home, capture_output=True,
                          text=True, check=True, timeout=60)
    key: str = json.loads(done.stdout)["key"]
    return key


def status_load(stack: ScaledStack, job_id: str, key: str | None, connections: int,
                seconds: float) -> dict[str, Any]:
    api = stack.apis[0]
    path = f"/api/v1/jobs/{job_id}"
    headers = [f"X-API-Key: {key}"] if key else []
    check = httpx.get(api.url(path), headers=dict(h.split(": ", 1) for h in headers),
                      trust_env=False)
    if check.status_code != 200:
        raise SystemExit(f"GET {path} answered {check.status_code}: {check.text}")
    if has_wrk():
        result = run_wrk(api.url(path), headers, connections, seconds)
    else:
        result = run_python(api.port, path, headers, connections, seconds)
    result["connections"] = connections
    result["auth"] = "API key" if key else "anonymous"
    return result


# --- 3. redelivery ---------------------------------------------------------------------

class JobWatch:
    """Reads one job's row straight from PostgreSQL."""

    def __init__(self, database_url: str) -> None:
        self.engine = make_engine(database_url)

    def row(self, job_id: str) -> dict[str, Any]:
        with self.engine.connect() as connection:
            return dict(connection.execute(sa.text(
                "SELECT status, stage, attempts, worker_id FROM jobs WHERE id = :id"),
                {"id": job_id}).mappings().one())

    def wait(self, job_id: str, until: Any, timeout: float, what: str,
             poll: float = 0.02) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            row = self.row(job_id)
            if until(row):
                return row
            if time.monotonic() > deadline:
                raise SystemExit(f"job {job_id} not {what} after {timeout:.0f} s: {row}")
            time.sleep(poll)

    def close(self) -> None:
        self.engine.dispose()


def _transcribing(row: dict[str, Any]) -> bool:
    return bool(row["status"] == "running" and row["stage"] == "transcribing")


def redelivery(stack: ScaledStack, recording: Path, kills: int) -> dict[str, Any]:
    watch = JobWatch(stack.database_url)
    worker = stack.worker(concurrency=1)
    replacement: WorkerProcess | None = None
    child_seconds: list[float] = []
    try:
        with stack.apis[0].client(timeout=60) as client:
            for _ in range(kills):
                job_id = submit(client, recording)
                row = watch.wait(job_id, _transcribing, 120, "transcribing")
                pid = worker_pid(row)
                assert pid is not None
                killed = time.monotonic()
                worker.kill_pool_process(pid)
                watch.wait(job_id, lambda r: r["status"] == "running" and r["attempts"] == 2,
                           120, "redelivered")
                child_seconds.append(time.monotonic() - killed)
                watch.wait(job_id, lambda r: r["status"] in FINISHED, 300, "finished")
            # The whole worker: only the lease and the API's reconciler can bring it back.
            job_id = submit(client, recording)
            watch.wait(job_id, _transcribing, 120, "transcribing")
            killed = time.monotonic()
            worker.kill()
            replacement = stack.worker(concurrency=1)
            watch.wait(job_id, lambda r: r["status"] == "running" and r["attempts"] == 2,
                       180, "recovered")
            worker_seconds = time.monotonic() - killed
            watch.wait(job_id, lambda r: r["status"] in FINISHED, 300, "finished")
    finally:
        worker.stop()
        if replacement is not None:
            replacement.stop()
        watch.close()
    return {"pool_process_kill_s": child_seconds, "worker_kill_s": worker_seconds,
            "lease_seconds": float(stack.env["HARK_JOB_LEASE_SECONDS"]),
            "reconcile_seconds": float(stack.env["HARK_RECONCILE_SECONDS"])}


# --- the report ------------------------------------------------------------------------

def report(results: dict[str, Any]) -> None:
    runs = results.get("throughput", [])
    for r in runs:
        print(f"1. --concurrency {r['concurrency']}: {r['jobs']} jobs ({r['rounds']} x the "
              f"English corpus) in {r['seconds']:.1f} s = "
              f"{r['jobs_per_minute']:.1f} jobs/min ({r['audio_seconds']:.0f} s of audio, "
              f"{r['real_time_factor']:.1f}x real time)")
    by: dict[int, float] = {}
    for r in runs:
        by[r["concurrency"]] = max(by.get(r["concurrency"], 0.0), r["jobs_per_minute"])
    if 1 in by and 2 in by:
        ratio = by[2] / by[1]
        best = " (best runs)" if len(runs) > len(by) else ""
        print(f"   2 vs 1 worker processes{best}: {ratio:.2f}x (target ≥ 1.8x: "
              f"{'ok' if ratio >= 1.8 else 'MISSED'})")
    for r in results.get("status", []):
        print(f"2. status GET on PostgreSQL ({r['auth']}, {r['connections']} connections, "
              f"{r['client']}): {r['rps']:.0f} requests/s, p50 {r['p50_ms']:.1f} ms, "
              f"p99 {r['p99_ms']:.1f} ms, {r['non_2xx']} non-2xx")
    if "redelivery" in results:
        r = results["redelivery"]
        times = r["pool_process_kill_s"]
        print(f"3. SIGKILL of the pool process running a job → running again (attempt 2): "
              f"median {statistics.median(times):.2f} s, min {min(times):.2f} s, "
              f"max {max(times):.2f} s ({len(times)} kills)")
        print(f"   SIGKILL of the whole worker, new worker started → running again: "
              f"{r['worker_kill_s']:.1f} s (lease {r['lease_seconds']:.0f} s, reconciler "
              f"every {r['reconcile_seconds']:.0f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--concurrency", type=lambda v: [int(c) for c in v.split(",")],
                        default=[1, 2], help="worker --concurrency values, comma-separated")
    parser.add_argument("--seconds", type=float, default=10, help="status GET duration")
    parser.add_argument("--connections", type=lambda v: [int(c) for c in v.split(",")],
                        default=[64, 8], help="status GET connections, comma-separated")
    parser.add_argument("--rounds", type=int, default=2,
                        help="times the corpus is submitted (more rounds: less of the tail, "
                        "where one process finishes the last job while the other idles)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs of each concurrency, interleaved; the best one counts "
                        "(noise on a shared machine only ever slows a run down)")
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--only", default=",".join(PARTS), help="comma-separated parts")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    parts = set(args.only.split(","))
    if parts - set(PARTS):
        parser.error(f"--only takes {', '.join(PARTS)}")
    results: dict[str, Any] = {"machine": machine(), "load_average": os.getloadavg()}
    print(f"machine: {results['machine']}; load average {results['load_average'][0]:.2f}")
    items = [item.audio for item in
             read_manifest(corpus_dir() / "asr" / "manifest.jsonl", {"en"})]
    with tempfile.TemporaryDirectory(prefix="hark-bench-scaled-") as tmp, \
            scaled_stack(Path(tmp) / "stack") as stack:
        if "throughput" in parts:
            results["throughput"] = []
            for concurrency in [c for _ in range(args.repeat) for c in args.concurrency]:
                run = throughput(stack, concurrency, items, args.rounds)
                print(f"   (concurrency {concurrency}: {run['jobs_per_minute']:.1f} jobs/min)",
                      file=sys.stderr)
                results["throughput"].append(run)
        if "status" in parts:
            worker = stack.worker(concurrency=1)
            try:
                with stack.apis[0].client(timeout=60) as client:
                    job_id = submit(client, items[0])
                    wait_all(client, [job_id], 120)
            finally:
                worker.stop()
            key = create_key(stack)
            results["status"] = [status_load(stack, job_id, header, connections, args.seconds)
                                 for connections in args.connections
                                 for header in (None, key)]
        if "redelivery" in parts:
            recording = long_recording(60.0, Path(tmp) / "long.wav")
            results["redelivery"] = redelivery(stack, recording, args.kills)
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
