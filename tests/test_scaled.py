"""Scaled mode end to end: API replicas (`hark serve --no-worker`) and Celery workers
(`hark worker`) as separate process trees on PostgreSQL, a private Redis and a moto S3
server (issue #5, items 1, 3-6, 8).

One stack (one database, one Redis, one bucket, API process A, one worker with one
pool process) serves the tests in order; the crash tests leave it with a fresh
worker. The PostgreSQL restart test runs its own stack on a private cluster, since
the shared server on 5432 cannot be restarted.

The tests skip when PostgreSQL, redis-server or moto are missing, and fail instead
when HARK_REQUIRE_SERVICES=1 (CI).
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import sqlalchemy as sa

from hark.db import make_engine
from hark.pipeline.audio import SAMPLE_RATE
from hark.webhooks.signing import verify
from tests.support.common import free_port, returns_within, wait_for
from tests.support.http_servers import ScriptedServer, respond
from tests.support.jobs import (
    conversation,
    get_job,
    log_records,
    long_and_short,
    submit,
    wait_finished,
    wait_job,
    write_wav,
)
from tests.support.s3 import MotoS3Server, s3_server_fixture
from tests.support.scaled import (
    WEBHOOK_SECRET,
    PrivatePostgres,
    RedisEventTap,
    ScaledStack,
    SseReader,
    WorkerProcess,
    running,
    worker_pid,
)
from tests.support.server import clean_env, hark_command
from tests.test_db import throwaway_postgres

pytestmark = [pytest.mark.services, pytest.mark.slow]

# --- fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """long and short (tests.support.jobs); medium: 8 s of speech (a few progress and
    segment events)."""
    folder = tmp_path_factory.mktemp("recordings")
    return {**long_and_short(folder),
            "medium": write_wav(folder / "medium.wav", conversation()[: 8 * SAMPLE_RATE])}


@pytest.fixture(scope="module")
def s3() -> Iterator[MotoS3Server]:
    yield from s3_server_fixture()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, s3: MotoS3Server) -> Iterator[ScaledStack]:
    with throwaway_postgres() as database_url, \
            ScaledStack(tmp_path_factory.mktemp("scaled"), database_url, s3=s3) as started:
        started.api()
        started.worker(concurrency=1, env={"HARK_WORKER_METRICS_PORT": str(free_port())})
        yield started


def api_client(stack: ScaledStack, index: int = 0) -> httpx.Client:
    return stack.apis[index].client(timeout=30)


def live_worker(stack: ScaledStack) -> WorkerProcess:
    alive = [w for w in stack.workers if w.running()]
    assert len(alive) == 1, f"expected one running worker, found {len(alive)}"
    return alive[0]


def job_row(database_url: str, job_id: str) -> dict[str, Any]:
    """The job's row, read from PostgreSQL directly (the API does not show worker_id)."""
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            row = connection.execute(sa.text(
                "SELECT status, attempts, worker_id, result_key, media_key, lease_expires_at "
                "FROM jobs WHERE id = :id"), {"id": job_id}).mappings().one()
            return dict(row)
    finally:
        engine.dispose()


def wait_subscribed(reader: SseReader, timeout: float = 10) -> None:
    """Wait for the first event (the current state): the bus subscription exists."""
    def first_event() -> bool:
        assert reader.error is None, repr(reader.error)
        return bool(reader.events)

    wait_for(first_event, timeout, interval=0.02, message="no event from the SSE stream")


def wait_running_on_worker(stack: ScaledStack, job_id: str, *, attempt: int = 1,
                           timeout: float = 60) -> dict[str, Any]:
    """Wait until the job is transcribing (its decoders busy) in attempt `attempt`;
    returns its row, whose worker_id names the pool process."""
    with api_client(stack) as client:
        job = wait_job(client, job_id, lambda j: j["status"] != "queued"
                       and (j["stage"] == "transcribing" or j["status"] != "running"),
                       timeout, "transcribing")
    assert job["status"] == "running", f"the job finished before it could be interrupted: {job}"
    assert job["attempts"] == attempt, job
    return job_row(stack.database_url, job_id)


# --- 1. the whole lifecycle ------------------------------------------------------------


def test_job_lifecycle_through_api_and_worker_processes(
    stack: ScaledStack, recordings: dict[str, Path],
) -> None:
    with api_client(stack) as client:
        job = submit(client, recordings["medium"], diarize="true")
        assert job["status"] == "queued" and job["queue"] == "small"
        done = wait_finished(client, job["id"], 60)
        assert done["status"] == "completed", done
        assert done["attempts"] == 1 and done["model"].startswith("pocketsphinx")

        result = client.get(f"/api/v1/jobs/{job['id']}/result", params={"format": "json"})
        assert result.status_code == 200, result.text
        transcript = result.json()
        assert transcript["segments"] and transcript["model"] == done["model"]
        srt = client.get(f"/api/v1/jobs/{job['id']}/result", params={"format": "srt"})
        assert srt.status_code == 200 and "-->" in srt.text

        # The job row is in PostgreSQL, run by a Celery pool process of the worker.
        row = job_row(stack.database_url, job["id"])
        assert row["status"] == "completed" and row["attempts"] == 1
        assert worker_pid(row) in live_worker(stack).pool_pids() and \
            str(row["worker_id"]).endswith("/celery")
        # Media and result are objects in the bucket; the result is what the API serves.
        assert stack.object_keys(f"media/{job['id']}") == [f"media/{job['id']}/source"]
        results = stack.object_keys(f"results/{job['id']}")
        assert results == [f"results/{job['id']}/transcript-1.json"] == [row["result_key"]]
        assert json.loads(stack.get_object(results[0])) == transcript
        # The player's byte ranges come straight from the object.
        media = recordings["medium"].read_bytes()
        ranged = client.get(f"/api/v1/jobs/{job['id']}/media",
                            headers={"Range": "bytes=1000-4999"})
        assert ranged.status_code == 206 and ranged.content == media[1000:5000]
        assert ranged.headers["content-range"] == f"bytes 1000-4999/{len(media)}"

        purged = client.delete(f"/api/v1/jobs/{job['id']}", params={"purge": "true"})
        assert purged.status_code == 200, purged.text
        assert stack.object_keys(f"media/{job['id']}") == []
        assert stack.object_keys(f"results/{job['id']}") == []
        assert client.get(f"/api/v1/jobs/{job['id']}/result").status_code == 410
    # Both processes log JSON lines; the worker says it ran the job.
    assert log_records(stack.apis[0].log_text(), tracker_warnings=True)
    worker = live_worker(stack)
    worker_log = log_records(worker.log_text(), tracker_warnings=True)
    assert any("hark.run_job" in str(r["event"]) and "succeeded" in str(r["event"])
               for r in worker_log)
    # The worker's Prometheus endpoint counts what its pool processes did.
    port = worker.env["HARK_WORKER_METRICS_PORT"]
    metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    finished = [line for line in metrics.splitlines()
                if line.startswith("hark_jobs_finished_total{") and 'status="completed"' in line]
    assert finished and float(finished[0].split()[-1]) >= 1, metrics
    assert f'hark_audio_seconds_processed_total{{model="{done["model"]}"}}' in metrics


# --- 2. presigned uploads ----------------------------------------------------------------


def test_presigned_upload_goes_straight_to_s3(
    stack: ScaledStack, recordings: dict[str, Path],
) -> None:
    media = recordings["short"].read_bytes()
    with api_client(stack) as client:
        slot = client.post("/api/v1/uploads", json={"filename": "clip.wav", "size": len(media)})
        assert slot.status_code == 201, slot.text
        body = slot.json()
        assert body["method"] == "PUT"
        # The URL is the S3 server's, signed; Hark's API is not in the path of the bytes.
        assert body["url"].startswith(f"{stack.s3.endpoint_url}/{stack.bucket}/hark/uploads/")
        assert "X-Amz-Signature=" in body["url"]
        assert stack.apis[0].base_url not in body["url"]
        put = httpx.put(body["url"], content=media, trust_env=False, timeout=30)
        assert put.status_code == 200, put.text

        created = client.post("/api/v1/jobs", json={"source": {"upload_id": body["upload_id"]}})
        assert created.status_code == 202, created.text
        job = created.json()
        assert job["filename"] == "clip.wav"
        done = wait_finished(client, job["id"], 60)
        assert done["status"] == "completed", done
        assert client.get(f"/api/v1/jobs/{job['id']}/result",
                          params={"format": "txt"}).status_code == 200
        # The second use of the slot is refused.
        again = client.post("/api/v1/jobs", json={"source": {"upload_id": body["upload_id"]}})
        assert again.status_code == 409, again.text

        # A slot whose object was never PUT: 409, and no job.
        empty = client.post("/api/v1/uploads", json={"filename": "x.wav", "size": 1000}).json()
        refused = client.post("/api/v1/jobs", json={"source": {"upload_id": empty["upload_id"]}})
        assert refused.status_code == 409, refused.text
        assert refused.json()["error_code"] == "UPLOAD_NOT_READY"
        assert stack.object_keys(f"uploads/{empty['upload_id']}") == []


# --- 3. events across processes ----------------------------------------------------------


def test_events_reach_a_subscriber_on_another_api_process(
    stack: ScaledStack, recordings: dict[str, Path],
) -> None:
    if len(stack.apis) < 2:
        stack.api()
    b_url = stack.apis[1].base_url
    with api_client(stack, 0) as a:
        # A blocker keeps the only pool process busy, so that the job waits queued until
        # its subscriber on B is surely listening; canceling the blocker (on A) frees it.
        blocker = submit(a, recordings["long"])
        wait_running_on_worker(stack, blocker["id"])
        job = submit(a, recordings["medium"])
        blocker_events, events = SseReader(b_url, blocker["id"]), SseReader(b_url, job["id"])
        blocker_events.start()
        events.start()
        wait_subscribed(events)
        wait_subscribed(blocker_events)
        assert a.delete(f"/api/v1/jobs/{blocker['id']}").status_code == 200
        got = events.result(60)
        canceled = blocker_events.result(30)
    types = [e["type"] for e in got]
    # B first tells the current state (queued), then what the worker published.
    assert got[0] == {"type": "status", "job_id": job["id"], "status": "queued",
                      "stage": None, "progress": 0.0}, got[0]
    assert got[1]["type"] == "status" and got[1]["status"] == "running", types
    assert types[-1] == "completed" and types.count("completed") == 1, types
    first_progress, first_segment = types.index("progress"), types.index("segment")
    assert 1 < first_progress < len(types) - 1 and 1 < first_segment < len(types) - 1, types
    assert all(e["job_id"] == job["id"] for e in got)
    assert got[-1]["segments"] == types.count("segment") >= 1
    # The cancel, published by API process A, reached B's subscriber too.
    assert [e["type"] for e in canceled][-1] == "canceled"


# --- 4. cancel across machines -----------------------------------------------------------


def test_cancel_stops_the_job_on_the_worker_within_seconds(
    stack: ScaledStack, recordings: dict[str, Path],
) -> None:
    with api_client(stack) as client:
        long_job = submit(client, recordings["long"])
        row = wait_running_on_worker(stack, long_job["id"])
        queued = submit(client, recordings["short"])  # waits: the only pool process is busy
        time.sleep(0.5)
        assert get_job(client, queued["id"])["status"] == "queued"

        response = client.delete(f"/api/v1/jobs/{long_job['id']}")
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "canceled"
        # The pool process gives up the job and takes the next one; that it gave it up
        # mid-way, rather than running it to its end, shows in its log below.
        wait_job(client, queued["id"], lambda j: j["status"] != "queued", 30,
                 "started after the cancel")
        assert wait_finished(client, queued["id"], 60)["status"] == "completed"

        final = get_job(client, long_job["id"])
        assert final["status"] == "canceled" and final["finished_at"] is not None
        assert final["progress"] < 1.0
    assert stack.object_keys(f"results/{long_job['id']}") == []
    after = job_row(stack.database_url, long_job["id"])
    assert after["status"] == "canceled" and after["result_key"] is None
    worker = live_worker(stack)
    assert worker_pid(row) in worker.pool_pids()  # stopped the job, not the process
    # A job run on to its end would have had its result thrown away ("result discarded").
    assert f"job {long_job['id']}" not in worker.log_text()


# --- 5. crash safety -------------------------------------------------------------------


def test_killed_pool_process_job_is_redelivered_and_completes_exactly_once(
    stack: ScaledStack, recordings: dict[str, Path],
) -> None:
    worker = live_worker(stack)
    with ScriptedServer("127.0.0.2") as receiver, api_client(stack) as client:
        receiver.route("/hook", respond(200, b"ok"))
        job = submit(client, recordings["long"], webhook_url=receiver.url("/hook"))
        job_id = job["id"]
        with running(RedisEventTap(stack.redis.url, job_id)) as tap:
            sse = SseReader(stack.apis[0].base_url, job_id)
            sse.start()
            row = wait_running_on_worker(stack, job_id)
            victim = worker_pid(row)
            assert victim is not None and victim in worker.pool_pids(), (row, worker.pool_pids())
            killed_at = time.monotonic()
            worker.kill_pool_process(victim)

            # Celery sees its pool process die and requeues the message (acks_late,
            # reject_on_worker_lost); the new pool process takes the job over.
            again = wait_job(client, job_id, lambda j: j["attempts"] >= 2, 60, "redelivered")
            redelivered_after = time.monotonic() - killed_at
            done = wait_finished(client, job_id, 90)
            assert done["status"] == "completed", done
            assert done["attempts"] == 2 and done["error"] is None, done
            assert again["status"] in ("running", "completed")
            wait_job(client, job_id, lambda j: (j["webhook"] or {}).get("status")
                     in ("delivered", "failed"), 30, "done with its webhook")
            events = sse.result(30)
            time.sleep(2.0)  # anything late (a duplicate run, a second delivery) shows now

        assert worker.running(), "the worker itself must survive the loss of a pool process"
        assert victim not in worker.pool_pids()
        # Exactly once: one result object, one completed event, one webhook delivery.
        assert stack.object_keys(f"results/{job_id}") == [f"results/{job_id}/transcript-2.json"]
        assert [e["type"] for e in events].count("completed") == 1
        assert tap.types().count("completed") == 1, tap.types()
        hooks = [r for r in receiver.requests if r.path == "/hook"]
        assert len(hooks) == 1, [r.path for r in receiver.requests]
        headers = {k.lower(): v for k, v in hooks[0].headers.items()}
        assert verify(WEBHOOK_SECRET, hooks[0].body, headers["x-hark-signature"])
        assert json.loads(hooks[0].body)["job"]["attempts"] == 2
        final = get_job(client, job_id)
        assert final["webhook"]["status"] == "delivered" and final["webhook"]["attempts"] == 1
    # The worker's log stays JSON, and says what happened.
    lost = [r for r in log_records(worker.log_text(), tracker_warnings=True)
            if "signal 9" in str(r["event"])]
    assert lost and all(r["level"] == "error" for r in lost), lost
    print(f"\nredelivery after SIGKILL of the pool process: {redelivered_after:.1f} s")


def test_killed_worker_job_is_recovered_by_lease_and_reconciler(
    stack: ScaledStack, recordings: dict[str, Path],
) -> None:
    worker = live_worker(stack)
    with api_client(stack) as client:
        job = submit(client, recordings["long"])
        row = wait_running_on_worker(stack, job["id"])
        assert worker_pid(row) in worker.pool_pids()
        tree = [worker.pid, *worker.pool_pids()]
        killed_at = time.monotonic()
        worker.kill()  # the whole machine gone: main process, pool, decoders
        assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"
                       for pid in tree)
        replacement = WorkerProcess(worker.data_dir, worker.log_dir, worker.env,
                                    concurrency=1, name=f"{worker.name}-b")
        stack.workers.append(replacement)
        replacement.start()

        # The lease runs out (10 s), the API's reconciler (every second here) requeues
        # the job and sends its message again; the new worker runs it. The wait's 60 s
        # is the bound: without them, nothing would take the job back within it.
        again = wait_job(client, job["id"], lambda j: j["attempts"] >= 2, 60, "recovered")
        recovered_after = time.monotonic() - killed_at
        done = wait_finished(client, job["id"], 90)
    assert done["status"] == "completed" and done["attempts"] == 2, done
    assert again["status"] in ("running", "completed")
    assert worker_pid(job_row(stack.database_url, job["id"])) in replacement.pool_pids()
    assert stack.object_keys(f"results/{job['id']}") == \
        [f"results/{job['id']}/transcript-2.json"]
    print(f"\nrecovery after SIGKILL of the whole worker: {recovered_after:.1f} s")


def test_redis_restart_with_jobs_queued(stack: ScaledStack, recordings: dict[str, Path]) -> None:
    worker = live_worker(stack)
    with api_client(stack) as client:
        # One job running (its message unacknowledged), two waiting in Redis behind it.
        running_job = submit(client, recordings["long"])["id"]
        wait_running_on_worker(stack, running_job)
        in_redis = [submit(client, recordings["short"])["id"] for _ in range(2)]
        stack.redis.stop(hard=True)  # every message is lost with it
        # The API takes jobs while the broker is down: they are safe in the database.
        # (A generous bound, as the submission must not wait for the broker to return.)
        unsent = returns_within(lambda: submit(client, recordings["medium"])["id"], 20,
                                "a submission hung on the broker")
        assert get_job(client, unsent)["status"] == "queued"
        time.sleep(1.0)
        stack.redis.start()  # empty
        # A subscriber on the API: live events must flow again once both sides reconnect.
        events = SseReader(stack.apis[0].base_url, unsent)
        events.start()
        wait_subscribed(events)

        # The running job finishes where it is; the reconciler sends the messages of the
        # queued ones again (they waited 5 s); the reconnected worker runs them.
        done = wait_finished(client, running_job, 60)
        assert done["status"] == "completed" and done["attempts"] == 1, done
        for job_id in [*in_redis, unsent]:
            done = wait_finished(client, job_id, 120)
            assert done["status"] == "completed" and done["attempts"] == 1, done
        types = [e["type"] for e in events.result(30)]
        assert types[0] == "status" and types[-1] == "completed", types
        assert "progress" in types and "segment" in types, types
    for job_id in [running_job, *in_redis, unsent]:
        assert stack.object_keys(f"results/{job_id}") == [f"results/{job_id}/transcript-1.json"]
    assert worker.running()


# --- 6. the worker command -------------------------------------------------------------


def test_worker_without_a_broker_exits_2(tmp_path: Path) -> None:
    done = subprocess.run(hark_command("worker", "--concurrency", "1"),
                          env=clean_env(tmp_path), cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "HARK_BROKER_URL" in done.stderr and "broker" in done.stderr


# --- PostgreSQL restarted ------------------------------------------------------------------


def test_postgres_restart(tmp_path: Path, s3: MotoS3Server,
                          recordings: dict[str, Path]) -> None:
    with PrivatePostgres() as postgres:
        url = postgres.create_database(f"hark_{uuid.uuid4().hex[:8]}")
        # A lease longer than the outage: the running job's worker keeps it throughout.
        with ScaledStack(tmp_path / "pg-restart", url, s3=s3,
                         extra_env={"HARK_JOB_LEASE_SECONDS": "30"}) as pg_stack:
            api = pg_stack.api()
            pg_stack.worker(concurrency=1)
            with api.client(timeout=10) as client:
                before = submit(client, recordings["short"])
                assert wait_finished(client, before["id"], 60)["status"] == "completed"

                running_job = submit(client, recordings["long"])
                wait_job(client, running_job["id"], lambda j: j["status"] == "running",
                         60, "running")
                postgres.stop(mode="fast")
                down = client.get(f"/api/v1/jobs/{before['id']}")
                assert down.status_code == 503, down.text
                assert down.json()["error_code"] == "DATABASE_ERROR"
                time.sleep(2.0)
                postgres.start()
                restarted_at = time.monotonic()

                # The API answers again with the same data.
                wait_job(client, before["id"], lambda j: j["status"] == "completed", 30,
                         "readable again", tolerate_errors=True)
                answered_after = time.monotonic() - restarted_at
                assert client.get("/health/ready").status_code == 200
                after = submit(client, recordings["short"])
                assert wait_finished(client, after["id"], 60)["status"] == "completed"
                # The job that ran through the restart finished in its first attempt: its
                # progress writes failed for a while, and nothing else did.
                interrupted = wait_finished(client, running_job["id"], 120,
                                            tolerate_errors=True)
                assert interrupted["status"] == "completed", interrupted
                assert interrupted["attempts"] == 1, interrupted
                assert len(pg_stack.object_keys(f"results/{running_job['id']}")) == 1
                finished_after = time.monotonic() - restarted_at
    print(f"\nPostgreSQL restart: API answered {answered_after:.1f} s after, the job running "
          f"through it completed {finished_after:.1f} s after (attempt "
          f"{interrupted['attempts']})")


# --- 6. rates and quotas across API processes ---------------------------------------------


def test_a_keys_rate_and_its_organisations_quota_hold_across_api_processes(
    stack: ScaledStack, recordings: dict[str, Path],
) -> None:
    while len(stack.apis) < 2:
        stack.api()

    def hark(*args: str) -> str:
        done = subprocess.run(hark_command(*args), env=clean_env(stack.root, stack.env),
                              capture_output=True, text=True, timeout=60, check=True)
        return done.stdout

    key = json.loads(hark("keys", "create", "--tenant", "rated", "--rate-limit", "4/minute",
                          "--json"))["key"]
    # The window lives in Redis: both processes count against the same four requests.
    answers = []
    for turn in range(6):
        with stack.apis[turn % 2].client(key=key) as client:
            answers.append(client.get("/api/v1/jobs"))
    assert [a.status_code for a in answers] == [200, 200, 200, 200, 429, 429]
    assert [a.headers.get("x-ratelimit-remaining") for a in answers[:4]] == ["3", "2", "1", "0"]
    assert answers[5].json()["error_code"] == "RATE_LIMITED"

    # A quota of no concurrent jobs, set in the shared database, is seen by every process.
    hark("orgs", "quota", "local", "--concurrent-jobs", "0")
    try:
        for api in stack.apis:
            with api.client() as client, open(recordings["short"], "rb") as media:
                refused = client.post("/api/v1/jobs/upload",
                                      files={"file": ("short.wav", media, "audio/wav")})
            assert refused.status_code == 429 and \
                refused.json()["details"]["quota"] == "concurrent_jobs"
    finally:
        hark("orgs", "quota", "local", "--concurrent-jobs", "unlimited")
