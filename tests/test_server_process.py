"""`hark serve` as a real process tree: crash and restart, graceful stop, cancel, load,
live events over SSE and WebSocket, webhooks, and the JSON log.

Every test talks HTTP to a server started by `tests.support.server.HarkServer`
(real uvicorn, real spawned worker processes, pocketsphinx doing the work), so
these tests see what an operator sees, including what is left behind by a kill.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import websockets.sync.client as ws_client
from websockets.exceptions import ConnectionClosed

from hark.webhooks.signing import verify
from tests.support.common import wait_for
from tests.support.http_servers import Exchange, ScriptedServer
from tests.support.jobs import (
    FINISHED,
    FIXTURES,
    get_job,
    log_records,
    long_and_short,
    submit,
    wait_finished,
    wait_job,
)
from tests.support.server import HarkServer, create_key

pytestmark = [pytest.mark.slow]

ANONYMOUS = {"HARK_ALLOW_ANONYMOUS": "true"}


@pytest.fixture(scope="module")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """long and short (tests.support.jobs); medium: the 8.8 s two-voice fixture."""
    return {**long_and_short(tmp_path_factory.mktemp("recordings")),
            "medium": FIXTURES / "two_voices.ogg"}


def wait_transcribing(client: httpx.Client, job_id: str, timeout: float = 60) -> dict[str, Any]:
    job = wait_job(client, job_id, lambda j: j["stage"] == "transcribing"
                   or j["status"] in FINISHED, timeout, "transcribing")
    assert job["status"] == "running", f"the job finished before it could be interrupted: {job}"
    return job


def result_objects(data_dir: Path, job_id: str) -> list[str]:
    folder = data_dir / "storage" / "results" / job_id
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def the_result_object(data_dir: Path, job_id: str) -> dict[str, Any]:
    """The job's one stored result object (no second attempt's, no partial write)."""
    names = result_objects(data_dir, job_id)
    assert len(names) == 1 and names[0].endswith(".json"), names
    stored: dict[str, Any] = json.loads(
        (data_dir / "storage" / "results" / job_id / names[0]).read_bytes())
    return stored


def wait_gone(processes: list[Any], timeout: float) -> list[Any]:
    """Wait until none of the psutil processes runs (zombies count as gone); those
    still running after `timeout` seconds."""
    alive = list(processes)

    def running(process: Any) -> bool:
        try:
            return bool(process.is_running() and process.status() != "zombie")
        except Exception:  # psutil.NoSuchProcess: gone
            return False

    def all_gone() -> bool:
        nonlocal alive
        alive = [process for process in processes if running(process)]
        return not alive

    wait_for(all_gone, timeout, interval=0.1)
    return alive


def wait_reaped(pids: list[int], timeout: float = 15) -> None:
    """Wait until the processes no longer exist, not even as zombies.

    A restarted server requeues a job at once only when its old worker's pid is gone;
    this machine's init reaps orphans every second or so, and until then a dead worker
    still answers kill(pid, 0). (Past that, the job's lease would recover it.)
    """
    wait_for(lambda: not any(psutil.pid_exists(pid) for pid in pids), timeout,
             message=f"processes {pids} not reaped")


# --- event clients ---------------------------------------------------------------------

class SseReader(threading.Thread):
    """Reads one job's Server-Sent Events into `events` until the stream ends."""

    def __init__(self, server: HarkServer, job_id: str, key: str | None = None) -> None:
        super().__init__(daemon=True)
        self.url = server.url(f"/api/v1/jobs/{job_id}/events")
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.events: list[dict[str, Any]] = []
        self.names: list[str] = []
        self.status_code: int | None = None
        self.error: BaseException | None = None
        self.subscribed = threading.Event()

    def run(self) -> None:
        try:
            with httpx.Client(trust_env=False, timeout=httpx.Timeout(10, read=60)) as client, \
                    client.stream("GET", self.url, headers=self.headers) as response:
                self.status_code = response.status_code
                for line in response.iter_lines():
                    if line.startswith("event:"):
                        self.names.append(line.removeprefix("event:").strip())
                    elif line.startswith("data:"):
                        self.events.append(json.loads(line.removeprefix("data:")))
                        self.subscribed.set()
        except BaseException as exc:
            self.error = exc
        finally:
            self.subscribed.set()

    def result(self, timeout: float = 90) -> list[dict[str, Any]]:
        self.join(timeout)
        assert not self.is_alive(), f"SSE stream still open after {timeout} s: {self.events}"
        assert self.error is None, repr(self.error)
        assert self.status_code == 200
        # Each data line came with an `event:` line naming its type.
        assert self.names == [e["type"] for e in self.events]
        return self.events


class WsReader(threading.Thread):
    """Reads one job's WebSocket messages into `events` until the server closes."""

    def __init__(self, server: HarkServer, job_id: str, key: str | None = None) -> None:
        super().__init__(daemon=True)
        self.url = server.ws_url(f"/api/v1/jobs/{job_id}/ws")
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.events: list[dict[str, Any]] = []
        self.close_code: int | None = None
        self.error: BaseException | None = None
        self.subscribed = threading.Event()

    def run(self) -> None:
        try:
            with ws_client.connect(self.url, additional_headers=self.headers, proxy=None,
                                   open_timeout=10) as connection:
                try:
                    while True:
                        message = connection.recv(timeout=90)
                        self.events.append(json.loads(message))
                        self.subscribed.set()
                except ConnectionClosed:
                    pass
                self.close_code = connection.close_code
        except BaseException as exc:
            self.error = exc
        finally:
            self.subscribed.set()

    def result(self, timeout: float = 90) -> list[dict[str, Any]]:
        self.join(timeout)
        assert not self.is_alive(), f"WebSocket still open after {timeout} s: {self.events}"
        assert self.error is None, repr(self.error)
        assert self.close_code == 1000, self.close_code
        return self.events


def ws_close_code(server: HarkServer, path: str, headers: dict[str, str]) -> int | None:
    with ws_client.connect(server.ws_url(path), additional_headers=headers, proxy=None,
                           open_timeout=10) as connection:
        with pytest.raises(ConnectionClosed):
            connection.recv(timeout=10)
        return connection.close_code


# --- crash, restart, graceful stop, cancel ---------------------------------------------

@pytest.mark.timeout(150)
def test_killed_server_resumes_interrupted_and_queued_jobs_exactly_once(
    tmp_path: Path, recordings: dict[str, Path],
) -> None:
    data = tmp_path / "data"
    with HarkServer(data, tmp_path / "logs", env=ANONYMOUS, workers=1) as server:
        server.start()
        with server.client() as client:
            interrupted = submit(client, recordings["long"])["id"]
            waiting = submit(client, recordings["short"])["id"]
            wait_transcribing(client, interrupted)
            assert get_job(client, waiting)["status"] == "queued"
        workers = server.worker_pids()
        assert len(workers) == 1
        tree = server.descendants()
        assert len(tree) >= 2  # the worker and its decoder processes
        server.kill()
        # Only the server process got the signal; its worker dies with it (PDEATHSIG)
        # and the worker's decoders notice their parent is gone.
        worker_tree = [p for p in tree if p.pid in workers]
        assert wait_gone(worker_tree, 5) == [], "a worker outlived the killed server"
        assert wait_gone(tree, 15) == [], "processes outlived the killed server"
        assert server.survivors() == []
        wait_reaped(workers)
        # As if the first attempt had stored its result and died before recording it:
        # the attempt that completes the job removes that orphan.
        orphan = data / "storage" / "results" / interrupted / "transcript-1.json"
        orphan.parent.mkdir(parents=True, exist_ok=True)
        orphan.write_text('{"segments": []}')

        server.start()
        assert "recovered 1 interrupted jobs" in server.log_text()
        events = SseReader(server, interrupted)
        events.start()
        with server.client() as client:
            done = wait_finished(client, interrupted, 90)
            assert done["status"] == "completed", done
            assert done["attempts"] == 2
            assert done["progress"] == 1.0 and done["error"] is None
            result = client.get(f"/api/v1/jobs/{interrupted}/result").json()
            assert the_result_object(data, interrupted) == result
            assert result["duration"] == pytest.approx(68.0, abs=0.5)
            assert result["segments"]

            queued = wait_finished(client, waiting, 60)
            assert queued["status"] == "completed", queued
            assert queued["attempts"] == 1
            assert the_result_object(data, waiting)["segments"]
        received = events.result()
        assert received[0]["type"] == "status"
        assert [e["type"] for e in received].count("completed") == 1
        assert received[-1]["type"] == "completed"
        assert not {"failed", "canceled"} & {e["type"] for e in received}


@pytest.mark.timeout(120)
def test_interrupted_job_fails_past_the_attempt_limit(
    tmp_path: Path, recordings: dict[str, Path],
) -> None:
    data = tmp_path / "data"
    key = create_key(data)["key"]
    env = {"HARK_JOB_MAX_ATTEMPTS": "1"}  # no anonymous access: keys only
    with HarkServer(data, tmp_path / "logs", env=env, workers=1) as server:
        server.start()
        with server.client(key=key) as client:
            assert client.get("/api/v1/jobs", headers={"Authorization": ""}).status_code == 401
            job_id = submit(client, recordings["long"])["id"]
            wait_transcribing(client, job_id)
        workers = server.worker_pids()
        tree = server.descendants()
        server.kill()
        assert wait_gone(tree, 15) == []
        wait_reaped(workers)
        server.start()
        with server.client(key=key) as client:
            job = get_job(client, job_id)
            assert job["status"] == "failed", job
            assert job["error"]["error_code"] == "WORKER_LOST"
            assert job["attempts"] == 1
            assert job["finished_at"] is not None
            assert client.get(f"/api/v1/jobs/{job_id}/result").status_code == 409
        assert result_objects(data, job_id) == []
        late = SseReader(server, job_id, key)
        late.start()
        assert [e["type"] for e in late.result(15)] == ["status", "failed"]
        assert late.events[-1]["error"]["error_code"] == "WORKER_LOST"
    records = log_records(server.log_text(1), tracker_warnings=True)
    assert any("every request needs an API key" in r["event"] for r in records)
    assert not any("anonymous access is ON" in r["event"] for r in records)


@pytest.mark.timeout(150)
def test_worker_crash_is_retried_and_sigterm_hands_the_job_back(
    tmp_path: Path, recordings: dict[str, Path],
) -> None:
    data = tmp_path / "data"
    # pocketsphinx, whose decoder processes are part of what a crash must take down.
    env = {**ANONYMOUS, "HARK_DEFAULT_MODEL": "pocketsphinx"}
    with HarkServer(data, tmp_path / "logs", env=env, workers=1) as server:
        server.start()
        with server.client() as client:
            job_id = submit(client, recordings["long"])["id"]
            wait_transcribing(client, job_id)
            # A worker dying under a live server: the server restarts it, and the job
            # runs again (its second attempt) on the new worker.
            (crashed,) = server.worker_pids()
            worker = psutil.Process(crashed)
            crashed_tree = [worker, *worker.children(recursive=True)]
            assert len(crashed_tree) >= 2  # the worker and its decoder processes
            os.kill(crashed, signal.SIGKILL)
            wait_job(client, job_id, lambda j: j["attempts"] == 2
                     and j["stage"] == "transcribing", 60, "retried on a new worker")
            assert server.worker_pids() not in ([], [crashed])
            assert wait_gone(crashed_tree, 15) == []  # its decoders did not stay behind

        # SIGTERM while the restarted worker runs the job: the job goes back to the
        # queue without counting this attempt, and everything exits in bounded time.
        # An open event stream ends at once rather than holding the shutdown up.
        events = SseReader(server, job_id)
        events.start()
        assert events.subscribed.wait(10)
        tree = server.descendants()
        # Bounded: the test fails if the server has not exited 60 s after SIGTERM. (That
        # its workers stopped within the server's own grace is the "did not stop" below.)
        server.terminate(60)
        events.join(5)
        assert not events.is_alive() and events.error is None, events.error
        assert events.events[0]["type"] == "status"
        # A graceful stop is a normal exit. (The worker killed above leaves its decoder
        # pool's semaphores for the resource tracker to report; see the test below for a
        # stop with nothing killed.)
        assert server.process is not None and server.process.returncode == 0
        assert wait_gone(tree, 5) == []
        log = server.log_text()
        assert "stopped" in log and "did not stop" not in log, server.log_tail()
        assert all(r["level"] != "error" for r in log_records(log, tracker_warnings=True))

        with sqlite3.connect(data / "hark.db") as db:
            row = db.execute("SELECT status, attempts, worker_id, progress FROM jobs "
                             "WHERE id = ?", (job_id,)).fetchone()
        assert row == ("queued", 1, None, 0.0)
        assert result_objects(data, job_id) == []

        server.start()
        with server.client() as client:
            job = wait_finished(client, job_id, 90)
            assert job["status"] == "completed", job
            assert job["attempts"] == 2
            result = client.get(f"/api/v1/jobs/{job_id}/result").json()
        assert the_result_object(data, job_id) == result


@pytest.mark.timeout(150)
def test_a_crashed_decoder_process_is_retried_like_a_crashed_worker(
    tmp_path: Path, recordings: dict[str, Path],
) -> None:
    env = {**ANONYMOUS, "HARK_DEFAULT_MODEL": "pocketsphinx"}
    with HarkServer(tmp_path / "data", tmp_path / "logs", env=env, workers=1) as server:
        server.start()
        with server.client() as client:
            job_id = submit(client, recordings["long"])["id"]
            wait_transcribing(client, job_id)
            (worker,) = server.worker_pids()
            decoders = psutil.Process(worker).children(recursive=True)
            assert decoders, "pocketsphinx decodes in child processes"
            os.kill(decoders[0].pid, signal.SIGKILL)
            # The job runs again on the same worker (its engine restarted), and completes.
            job = wait_finished(client, job_id, 120)
            assert job["status"] == "completed", job
            assert job["attempts"] == 2
            assert server.worker_pids() == [worker]


@pytest.mark.timeout(120)
def test_cancel_stops_a_running_job_and_the_worker_moves_on(
    tmp_path: Path, recordings: dict[str, Path],
) -> None:
    data = tmp_path / "data"
    with HarkServer(data, tmp_path / "logs", env=ANONYMOUS, workers=1) as server:
        server.start()
        with server.client() as client:
            running = submit(client, recordings["long"])["id"]
            waiting = submit(client, recordings["short"])["id"]
            wait_transcribing(client, running)
            events = SseReader(server, running)
            events.start()
            assert events.subscribed.wait(10)

            response = client.delete(f"/api/v1/jobs/{running}")
            assert response.status_code == 200, response.text
            assert response.json()["status"] == "canceled"
            # One worker: the queued job can only start once the canceled one stopped.
            # (That it stopped mid-way, rather than running to its end and discarding
            # the result, shows in the log check below.)
            wait_job(client, waiting, lambda j: j["status"] != "queued", 30,
                     "started after the cancel")
            after = wait_finished(client, waiting, 30)
            assert after["status"] == "completed", after

            job = get_job(client, running)
            assert job["status"] == "canceled"
            assert client.get(f"/api/v1/jobs/{running}/result").status_code == 409
        received = events.result(15)
        assert received[-1]["type"] == "canceled"
        assert [e["type"] for e in received].count("canceled") == 1
        assert "completed" not in {e["type"] for e in received}
        assert result_objects(data, running) == []
        # Nothing logged for it: no failure, and no "result discarded" of a job that ran
        # on to its end.
        assert f"job {running}" not in server.log_text()


# --- one server for load, events, webhooks and logs ------------------------------------

class SharedServer:
    def __init__(self, server: HarkServer, keys: dict[str, dict[str, str]]) -> None:
        self.server = server
        self.keys = keys

    def client(self, tenant: str = "local") -> httpx.Client:
        return self.server.client(key=self.keys[tenant]["key"])


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedServer]:
    root = tmp_path_factory.mktemp("shared-server")
    data = root / "data"
    keys = {"local": create_key(data, name="main"),
            "bulk": create_key(data, name="bulk", tenant="bulk"),
            "events": create_key(data, name="events", tenant="events")}
    env = {**ANONYMOUS, "HARK_FETCH_ALLOWED_NETWORKS": '["127.0.0.2/32"]'}
    with HarkServer(data, root / "logs", env=env, workers=2) as server:
        server.start()
        yield SharedServer(server, keys)


@pytest.mark.timeout(150)
def test_fifty_concurrent_submissions_all_complete_once(
    shared: SharedServer, recordings: dict[str, Path],
) -> None:
    server, key = shared.server, shared.keys["bulk"]["key"]
    media = recordings["short"].read_bytes()

    async def submit_all() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=50)
        async with httpx.AsyncClient(base_url=server.base_url, trust_env=False, timeout=60,
                                     limits=limits,
                                     headers={"Authorization": f"Bearer {key}"}) as client:
            return await asyncio.gather(*(
                client.post("/api/v1/jobs/upload",
                            files={"file": (f"clip-{i}.wav", media, "audio/wav")})
                for i in range(50)))

    responses = asyncio.run(submit_all())
    assert [r.status_code for r in responses] == [202] * 50, \
        [r.text for r in responses if r.status_code != 202][:3]
    ids = {r.json()["id"] for r in responses}
    assert len(ids) == 50

    with shared.client("bulk") as client:
        page: dict[str, Any] = {}
        statuses: list[str] = []

        def all_finished() -> bool:
            nonlocal page, statuses
            page = client.get("/api/v1/jobs", params={"limit": 200}).json()
            statuses = [j["status"] for j in page["items"]]
            return all(s in FINISHED for s in statuses)

        wait_for(all_finished, 120, interval=0.5)
        completed = client.get("/api/v1/jobs",
                               params={"status": "completed", "limit": 200}).json()
    assert page["next_cursor"] is None and len(page["items"]) == 50
    assert statuses == ["completed"] * 50, statuses
    assert {j["id"] for j in completed["items"]} == ids
    assert all(j["attempts"] == 1 for j in completed["items"])
    for job_id in ids:
        assert len(result_objects(server.data_dir, job_id)) == 1


def _check_event_order(events: list[dict[str, Any]], job_id: str) -> None:
    types = [e["type"] for e in events]
    assert types[0] == "status", types
    assert types[-1] == "completed" and types.count("completed") == 1, types
    assert set(types) <= {"status", "progress", "segment", "completed"}, types
    assert "progress" in types and "segment" in types, types
    assert all(e["job_id"] == job_id for e in events)
    progress = [e["progress"] for e in events if "progress" in e]
    assert progress == sorted(progress), progress
    assert progress[-1] == 1.0
    # Segments arrive while transcribing, after the first progress and before the end.
    assert types.index("progress") < types.index("segment")


def _segment_fields(segments: list[dict[str, Any]]) -> list[tuple[str, float, float]]:
    return [(s["text"], round(s["start"], 2), round(s["end"], 2)) for s in segments]


@pytest.mark.timeout(120)
def test_events_in_order_over_sse_and_websocket(
    shared: SharedServer, recordings: dict[str, Path],
) -> None:
    server, key = shared.server, shared.keys["events"]["key"]
    with shared.client("events") as client:
        # Two short jobs first keep both workers busy for a moment, so the clients are
        # subscribed while the watched job is still queued: they see all of it.
        for _ in range(2):
            submit(client, recordings["short"])
        job_id = submit(client, recordings["medium"])["id"]
        sse, ws = SseReader(server, job_id, key), WsReader(server, job_id, key)
        sse.start()
        ws.start()
        assert sse.subscribed.wait(10) and ws.subscribed.wait(10)
        by_sse, by_ws = sse.result(), ws.result()
        job = get_job(client, job_id)
        assert job["status"] == "completed"
        result = client.get(f"/api/v1/jobs/{job_id}/result").json()

    for events in (by_sse, by_ws):
        _check_event_order(events, job_id)
        segments = [e["segment"] for e in events if e["type"] == "segment"]
        assert _segment_fields(segments) == _segment_fields(result["segments"])
        assert events[-1]["status"] == "completed"
        assert events[-1]["duration"] == pytest.approx(result["duration"])
        assert events[-1]["segments"] == len(result["segments"])
    # Both clients were subscribed before the job started: they got the same events.
    assert [e for e in by_sse if e["type"] != "status"] == \
        [e for e in by_ws if e["type"] != "status"]

    # A late subscriber gets the current state and the outcome, then the stream ends.
    late_sse, late_ws = SseReader(server, job_id, key), WsReader(server, job_id, key)
    late_sse.start()
    late_ws.start()
    for late in (late_sse.result(15), late_ws.result(15)):
        assert [e["type"] for e in late] == ["status", "completed"]
        assert late[0]["status"] == "completed" and late[0]["progress"] == 1.0

    path = f"/api/v1/jobs/{job_id}/ws"
    assert ws_close_code(server, path, {"Authorization": "Bearer hark_not_a_key"}) == 4401
    assert ws_close_code(server, f"{path}?api_key=hark_not_a_key", {}) == 4401
    # Another tenant's job looks like no job at all.
    assert ws_close_code(server, path, {"Authorization":
                                        f"Bearer {shared.keys['local']['key']}"}) == 4404
    assert ws_close_code(server, "/api/v1/jobs/no-such-job/ws",
                         {"Authorization": f"Bearer {key}"}) == 4404
    with httpx.Client(trust_env=False) as client:
        response = client.get(server.url("/api/v1/jobs/no-such-job/events"),
                              headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 404
    assert response.json()["error_code"] == "JOB_NOT_FOUND"


@pytest.mark.timeout(120)
def test_webhooks_are_signed_and_retried(
    shared: SharedServer, recordings: dict[str, Path],
) -> None:
    secret = shared.keys["local"]["webhook_secret"]
    flaky_calls: list[int] = []

    def flaky(exchange: Exchange) -> None:
        flaky_calls.append(1)
        status = 500 if len(flaky_calls) <= 2 else 200
        exchange.send_head(status, {"Content-Length": "2"})
        exchange.write(b"ok")

    def ok(exchange: Exchange) -> None:
        exchange.send_head(200, {"Content-Length": "2"})
        exchange.write(b"ok")

    with ScriptedServer("127.0.0.2") as receiver, shared.client("local") as client:
        receiver.route("/hook", ok)
        receiver.route("/flaky", flaky)
        steady = submit(client, recordings["short"], webhook_url=receiver.url("/hook"))["id"]
        retried = submit(client, recordings["short"], webhook_url=receiver.url("/flaky"))["id"]
        for job_id in (steady, retried):
            wait_job(client, job_id, lambda j: (j["webhook"] or {}).get("status")
                     in ("delivered", "failed"), 60, "done with its webhook")
        time.sleep(1.0)  # room for a duplicate delivery to show up
        steady_job, retried_job = get_job(client, steady), get_job(client, retried)
        requests = list(receiver.requests)

    assert steady_job["status"] == retried_job["status"] == "completed"
    assert steady_job["webhook"]["status"] == "delivered"
    assert steady_job["webhook"]["attempts"] == 1
    assert retried_job["webhook"]["status"] == "delivered"
    assert retried_job["webhook"]["attempts"] == 3
    assert retried_job["webhook"]["error"] is None

    by_path: dict[str, list[Any]] = {"/hook": [], "/flaky": []}
    for request in requests:
        by_path[request.path].append(request)
    assert len(by_path["/hook"]) == 1 and len(by_path["/flaky"]) == 3
    for path, job_id in (("/hook", steady), ("/flaky", retried)):
        for request in by_path[path]:
            headers = {k.lower(): v for k, v in request.headers.items()}
            assert request.method == "POST"
            assert verify(secret, request.body, headers["x-hark-signature"])
            assert not verify(shared.keys["bulk"]["webhook_secret"], request.body,
                              headers["x-hark-signature"])
            assert headers["x-hark-event"] == "job.completed"
            assert headers["x-hark-delivery"] == f"{job_id}:job.completed"
            body = json.loads(request.body)
            assert body["event"] == "job.completed"
            assert body["job"]["id"] == job_id and body["job"]["status"] == "completed"


def test_log_is_json_with_request_ids(shared: SharedServer) -> None:
    server = shared.server
    with shared.client() as client:
        response = client.get("/api/v1/jobs", headers={"X-Request-ID": "trace-me-123"})
        assert response.headers["X-Request-ID"] == "trace-me-123"
        missing = client.get("/api/v1/jobs/not-a-job")
        assert missing.status_code == 404
        generated = missing.headers["X-Request-ID"]
    records: list[dict[str, Any]] = []

    def logged(*expected: tuple[str, str, int]) -> bool:
        """The access lines of these requests are in the log (written after the
        response went out)."""
        nonlocal records
        records = log_records(server.log_text())
        return set(expected) <= {(r.get("request_id"), r.get("path"), r.get("status"))
                                 for r in records if r["event"] == "http_request"}

    wait_for(lambda: logged(("trace-me-123", "/api/v1/jobs", 200),
                            (generated, "/api/v1/jobs/not-a-job", 404)),
             message="no access lines for the requests")
    assert all({"event", "level", "timestamp"} <= set(r) for r in records)
    requests = [r for r in records if r["event"] == "http_request"]
    assert requests and all(r.get("request_id") for r in requests)
    paths = {(r["request_id"], r["path"], r["status"]) for r in requests}
    assert ("trace-me-123", "/api/v1/jobs", 200) in paths
    assert (generated, "/api/v1/jobs/not-a-job", 404) in paths
    # One access line per request (uvicorn's own access log stays off), and readiness
    # probes, which the helper sent many of, stay below info.
    assert [r["event"] for r in records if r.get("request_id") == "trace-me-123"] == \
        ["http_request"]
    assert not any("/health" in (r.get("path") or r["event"]) for r in records)
    startup = [r["event"] for r in records if r.get("logger") == "hark.server"]
    assert any("anonymous access is ON" in event for event in startup), startup
    # Worker processes log to the same stream, in the same format.
    wait_for(lambda: any(r.get("logger") == "hark.worker"
                         for r in log_records(server.log_text())),
             20, interval=0.2, message="no worker line in the log")


@pytest.mark.timeout(90)
def test_a_stopped_server_exits_cleanly(tmp_path: Path) -> None:
    """SIGTERM (as from a container runtime): a graceful stop, exit status 0, every line
    JSON, and no leaked-semaphore warning from multiprocessing (the interpreter exits
    the normal way, so the worker pool's primitives are released)."""
    with HarkServer(tmp_path / "data", tmp_path / "logs", env=ANONYMOUS, workers=2) as server:
        server.start()
        with server.client() as client:
            assert client.get("/api/v1/jobs").status_code == 200
        server.terminate(60)
        assert server.process is not None and server.process.returncode == 0
        log = server.log_text()
        assert "leaked semaphore" not in log and "Traceback" not in log, server.log_tail()
        records = log_records(log)
        assert any(r["event"] == "shutting down" for r in records)
