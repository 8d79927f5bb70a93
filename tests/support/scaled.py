"""Scaled mode as real process trees: `hark serve --no-worker` API processes and
`hark worker` (Celery) processes on a private Redis, a moto S3 server and PostgreSQL.

    with ScaledStack(tmp_path, database_url) as stack:   # redis + S3 bucket started
        api = stack.api()                                # `hark serve --no-worker`
        worker = stack.worker(concurrency=1)             # `hark worker`
        job = submit(api.client(), path)
        stack.object_keys(f"results/{job['id']}")        # what the bucket holds

Every process gets the same environment (`stack.env`): HARK_DATABASE_URL,
HARK_BROKER_URL (the private redis-server), HARK_STORAGE_URL=s3://<bucket>/hark with
HARK_S3_ENDPOINT_URL and test credentials, a short job lease (10 s), the shortest
broker visibility timeout (60 s), a quick reconciler (every 1 s, re-sending the
messages of jobs queued for 5 s), JSON logs. Each process runs in its own session, so
teardown kills its whole group (a worker's pool processes and their decoders too),
even when the main process already died.

`PrivatePostgres` is a PostgreSQL cluster of the test's own (initdb + pg_ctl, run as
`nobody` since initdb refuses root), for the one test that restarts the database: the
shared server on 5432 cannot be restarted.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import psutil
import pytest

from tests.support.common import free_port, wait_for
from tests.support.redis_server import RedisServer
from tests.support.s3 import TEST_CREDENTIALS, MotoS3Server
from tests.support.server import HarkServer, clean_env, hark_command

# Short enough for the recovery tests, long enough that a heartbeat delayed by a
# loaded 2-core machine does not lose a running job its lease.
LEASE_SECONDS = 10
# The API's reconciler: a pass every second, and a job queued for 5 s gets its message
# sent again (duplicates are harmless by design: the tests run with plenty of them).
RECONCILE_SECONDS = 1
RESEND_AFTER_SECONDS = 5
VISIBILITY_SECONDS = 60  # the broker's minimum (make_celery raises anything lower)
WEBHOOK_SECRET = "whsec_scaled-tests"
PG_BIN = Path("/usr/local/bin")


def require(reason: str) -> None:
    """Skip for a missing service, or fail when HARK_REQUIRE_SERVICES=1 (CI)."""
    if os.environ.get("HARK_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason}; HARK_REQUIRE_SERVICES=1 requires it")
    pytest.skip(reason)


def scaled_env(*, database_url: str, broker_url: str, bucket: str, endpoint_url: str,
               extra: dict[str, str] | None = None) -> dict[str, str]:
    """The HARK_* and AWS_* settings every process of a stack runs with."""
    env = {
        "HARK_DATABASE_URL": database_url,
        "HARK_BROKER_URL": broker_url,
        "HARK_STORAGE_URL": f"s3://{bucket}/hark",
        "HARK_S3_ENDPOINT_URL": endpoint_url,
        "HARK_S3_REGION": TEST_CREDENTIALS["AWS_DEFAULT_REGION"],
        "HARK_JOB_LEASE_SECONDS": str(LEASE_SECONDS),
        "HARK_BROKER_VISIBILITY_SECONDS": str(VISIBILITY_SECONDS),
        "HARK_RECONCILE_SECONDS": str(RECONCILE_SECONDS),
        "HARK_RESEND_AFTER_SECONDS": str(RESEND_AFTER_SECONDS),
        "HARK_LOG_FORMAT": "json",
        "HARK_LOG_LEVEL": "INFO",
        "HARK_ALLOW_ANONYMOUS": "true",
        "HARK_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "HARK_FETCH_ALLOWED_NETWORKS": '["127.0.0.2/32"]',
        "HARK_DEFAULT_MODEL": "pocketsphinx",
        "HARK_ASR_PROCESSES": "1",
        # Several workers share this machine: no fixed metrics port (default 9100).
        "HARK_WORKER_METRICS_PORT": "0",
        **TEST_CREDENTIALS,
    }
    env.update(extra or {})
    return env


# --- processes -------------------------------------------------------------------------

class ApiProcess(HarkServer):
    """`hark serve --no-worker`: an API replica of scaled mode."""

    def _serve_options(self) -> tuple[list[str], dict[str, str]]:
        return ["--no-worker"], {}


class WorkerProcess:
    """`hark worker` (a Celery prefork worker) in its own session.

    `pool_pids()` are the Celery pool processes that run jobs (children of the main
    process); `kill()` SIGKILLs the main process and every process of its group, as a
    machine that lost power would.
    """

    def __init__(self, data_dir: Path, log_dir: Path, env: dict[str, str], *,
                 concurrency: int = 1, queues: str = "small,medium,large",
                 name: str = "worker") -> None:
        self.data_dir = data_dir
        self.log_dir = log_dir
        self.env = env
        self.concurrency = concurrency
        self.queues = queues
        self.name = name
        self.runs = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = log_dir / f"{name}-0.stderr.log"
        self._groups: set[int] = set()
        self._seen: dict[int, psutil.Process] = {}
        data_dir.mkdir(parents=True, exist_ok=True)
        log_dir.mkdir(parents=True, exist_ok=True)

    def start(self, timeout: float = 90.0) -> WorkerProcess:
        assert self.process is None or self.process.poll() is not None, "already running"
        self.runs += 1
        self.log_path = self.log_dir / f"{self.name}-{self.runs}.stderr.log"
        stdout_path = self.log_dir / f"{self.name}-{self.runs}.stdout.log"
        with open(self.log_path, "wb") as stderr, open(stdout_path, "wb") as stdout:
            self.process = subprocess.Popen(
                hark_command("worker", "--queues", self.queues,
                             "--concurrency", str(self.concurrency)),
                env=clean_env(self.data_dir, self.env), cwd=self.data_dir, stdout=stdout,
                stderr=stderr, stdin=subprocess.DEVNULL, start_new_session=True)
        self._groups.add(self.process.pid)
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        """Ready: Celery said so and the pool has all its processes."""
        assert self.process is not None
        process = self.process

        def ready() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"hark worker exited with {process.returncode}:\n"
                                   f"{self.log_tail()}")
            return " ready." in self.log_text() and len(self.pool_pids()) >= self.concurrency

        if not wait_for(ready, timeout, interval=0.1):
            raise RuntimeError(f"hark worker not ready after {timeout} s:\n{self.log_tail()}")
        self._remember_tree()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def pool_pids(self) -> list[int]:
        try:
            return [child.pid for child in psutil.Process(self.pid).children()]
        except psutil.NoSuchProcess:
            return []

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill_pool_process(self, pid: int) -> None:
        """SIGKILL one pool process (the one running a job), nothing else."""
        assert pid in self.pool_pids(), f"{pid} is not a pool process of {self.pid}"
        self._remember_tree()
        os.kill(pid, signal.SIGKILL)

    def kill(self) -> None:
        """SIGKILL the worker and everything it started."""
        self._remember_tree()
        self._kill_groups()
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(10)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM (Celery's warm shutdown), then SIGKILL whatever is left."""
        if self.process is not None and self.process.poll() is None:
            self._remember_tree()
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout)
        self.kill()

    def _kill_groups(self) -> None:
        for group in self._groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGKILL)
        seen = list(self._seen.values())
        for process in seen:
            with contextlib.suppress(psutil.Error):
                if process.is_running():
                    process.kill()
        psutil.wait_procs(seen, timeout=5)

    def _remember_tree(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(psutil.Error):
            for process in psutil.Process(self.pid).children(recursive=True):
                self._seen.setdefault(process.pid, process)

    def log_text(self, run: int | None = None) -> str:
        path = self.log_dir / f"{self.name}-{run or self.runs}.stderr.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def __enter__(self) -> WorkerProcess:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


class ScaledStack:
    """A private redis-server and S3 bucket, and the Hark processes started on them."""

    def __init__(self, root: Path, database_url: str, *,
                 s3: MotoS3Server | None = None,
                 extra_env: dict[str, str] | None = None) -> None:
        self.root = root
        self.database_url = database_url
        self.redis = RedisServer(root / "redis")
        self._own_s3 = s3 is None
        self.s3 = s3 or MotoS3Server()
        self.bucket = f"hark-{uuid.uuid4().hex[:12]}"
        self.extra_env = extra_env or {}
        self.env: dict[str, str] = {}
        self.apis: list[ApiProcess] = []
        self.workers: list[WorkerProcess] = []

    def start(self) -> ScaledStack:
        self.redis.start()
        if self._own_s3:
            self.s3.start()
        self.s3.create_bucket(self.bucket)
        self.env = scaled_env(database_url=self.database_url, broker_url=self.redis.url,
                              bucket=self.bucket, endpoint_url=self.s3.endpoint_url,
                              extra=self.extra_env)
        return self

    def api(self, *, start: bool = True) -> ApiProcess:
        index = len(self.apis)
        server = ApiProcess(self.root / f"api-{index}", self.root / "logs" / f"api-{index}",
                            env=self.env)
        self.apis.append(server)
        if start:
            server.start(timeout=90)
        return server

    def worker(self, *, concurrency: int = 1, queues: str = "small,medium,large",
               start: bool = True, env: dict[str, str] | None = None) -> WorkerProcess:
        index = len(self.workers)
        # INFO at least: readiness is read from Celery's "ready." line.
        process = WorkerProcess(self.root / f"worker-{index}", self.root / "logs",
                                {**self.env, "HARK_LOG_LEVEL": "INFO", **(env or {})},
                                concurrency=concurrency,
                                queues=queues, name=f"worker-{index}")
        self.workers.append(process)
        if start:
            process.start()
        return process

    def object_keys(self, under: str = "") -> list[str]:
        """Keys in the bucket under `hark/<under>`, without the `hark/` prefix."""
        client = self.s3.client()
        keys: list[str] = []
        for page in client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=f"hark/{under}"):
            keys += [str(item["Key"]).removeprefix("hark/") for item in page.get("Contents", [])]
        return sorted(keys)

    def get_object(self, key: str) -> bytes:
        answer = self.s3.client().get_object(Bucket=self.bucket, Key=f"hark/{key}")
        return bytes(answer["Body"].read())

    def close(self) -> None:
        for worker in self.workers:
            with contextlib.suppress(Exception):
                worker.stop(timeout=5)
        for server in self.apis:
            with contextlib.suppress(Exception):
                server.stop()
        self.redis.kill()
        if self._own_s3:
            with contextlib.suppress(Exception):
                self.s3.stop()

    def __enter__(self) -> ScaledStack:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


# --- a private PostgreSQL cluster ------------------------------------------------------

class PrivatePostgres:
    """A throwaway PostgreSQL cluster on a free port, restartable (`restart`, `stop`,
    `start`). Runs as `nobody` when the tests run as root (initdb refuses root)."""

    def __init__(self) -> None:
        initdb, pg_ctl = shutil.which("initdb") or str(PG_BIN / "initdb"), \
            shutil.which("pg_ctl") or str(PG_BIN / "pg_ctl")
        if not (os.access(initdb, os.X_OK) and os.access(pg_ctl, os.X_OK)):
            require("initdb/pg_ctl are not installed (needed for the PostgreSQL restart test)")
        self.initdb, self.pg_ctl = initdb, pg_ctl
        self.prefix: list[str] = []
        self.owner: tuple[int, int] | None = None
        if os.geteuid() == 0:
            try:
                user = pwd.getpwnam("nobody")
            except KeyError:
                require("running as root without a `nobody` user: initdb refuses root")
            runuser = shutil.which("runuser") or shutil.which("setpriv")
            if runuser is None:
                require("running as root without runuser/setpriv: initdb refuses root")
            assert runuser is not None
            self.prefix = [runuser, "-u", "nobody", "--"] if runuser.endswith("runuser") \
                else [runuser, f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}",
                      "--clear-groups"]
            self.owner = (user.pw_uid, user.pw_gid)
        # Not under pytest's tmp_path: that is root's, closed to `nobody`.
        self.directory = Path(tempfile.mkdtemp(prefix="hark-pg-"))
        if self.owner is not None:
            os.chown(self.directory, *self.owner)
        self.data = self.directory / "data"
        self.port = free_port()
        self.started = False

    @property
    def server_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, timeout: float = 60) -> None:
        done = subprocess.run([*self.prefix, *args], capture_output=True, text=True,
                              timeout=timeout, cwd=self.directory)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed ({done.returncode}):\n"
                               f"{done.stdout}\n{done.stderr}\n{self.log_tail()}")

    def init(self) -> PrivatePostgres:
        self._run(self.initdb, "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "-E", "UTF8", "--no-sync")
        return self

    def _options(self) -> str:
        return (f"-k {self.directory} -p {self.port} -c listen_addresses=127.0.0.1 "
                "-c fsync=off -c max_connections=200")

    def start(self) -> None:
        self._run(self.pg_ctl, "-D", str(self.data), "-l", str(self.directory / "log"),
                  "-o", self._options(), "-w", "-t", "60", "start")
        self.started = True

    def stop(self, mode: str = "fast") -> None:
        self._run(self.pg_ctl, "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")
        self.started = False

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def create_database(self, name: str) -> str:
        from hark.db import make_engine

        engine = make_engine(self.server_url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as connection:
                connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        finally:
            engine.dispose()
        return self.url(name)

    def log_tail(self, lines: int = 30) -> str:
        path = self.directory / "log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def close(self) -> None:
        if self.data.exists():
            with contextlib.suppress(Exception):
                self._run(self.pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop",
                          timeout=30)
        pid_file = self.data / "postmaster.pid"
        if pid_file.exists():  # pg_ctl could not stop it: the postmaster by its pid
            with contextlib.suppress(ValueError, OSError):
                os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> PrivatePostgres:
        try:
            self.init().start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


# --- HTTP helpers ----------------------------------------------------------------------

def worker_pid(job: dict[str, Any]) -> int | None:
    """The pid in a job's worker id `host/pid/celery` (None when not running)."""
    value = job.get("worker_id") or ""
    parts = str(value).split("/")
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


# --- event listeners -------------------------------------------------------------------

class SseReader(threading.Thread):
    """One job's Server-Sent Events, read into `events` until the stream ends."""

    def __init__(self, base_url: str, job_id: str) -> None:
        super().__init__(daemon=True)
        self.url = f"{base_url}/api/v1/jobs/{job_id}/events"
        self.events: list[dict[str, Any]] = []
        self.status_code: int | None = None
        self.error: BaseException | None = None
        self.connected = threading.Event()

    def run(self) -> None:
        try:
            with httpx.Client(trust_env=False, timeout=httpx.Timeout(10, read=120)) as client, \
                    client.stream("GET", self.url) as response:
                self.status_code = response.status_code
                self.connected.set()
                for line in response.iter_lines():
                    if line.startswith("data:"):
                        self.events.append(json.loads(line.removeprefix("data:")))
        except BaseException as exc:
            self.error = exc
        finally:
            self.connected.set()

    def types(self) -> list[str]:
        return [str(e["type"]) for e in self.events]

    def result(self, timeout: float = 120) -> list[dict[str, Any]]:
        self.join(timeout)
        assert not self.is_alive(), f"SSE stream still open after {timeout} s: {self.types()}"
        assert self.error is None, repr(self.error)
        assert self.status_code == 200
        return self.events


class RedisEventTap(threading.Thread):
    """Every message on a job's Redis event channel, for counting what workers sent
    (an SSE stream ends at the first terminal event; this one does not)."""

    def __init__(self, redis_url: str, job_id: str) -> None:
        super().__init__(daemon=True)
        import redis

        self.client = redis.Redis.from_url(redis_url)
        # (through a typed name: redis-py leaves pubsub() unannotated)
        open_pubsub: Callable[..., Any] = self.client.pubsub
        self.pubsub = open_pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(f"hark:events:{job_id}")
        self.events: list[dict[str, Any]] = []
        self._closing = threading.Event()

    def run(self) -> None:
        while not self._closing.is_set():
            with contextlib.suppress(Exception):
                message = self.pubsub.get_message(timeout=0.2)
                if message and message.get("type") == "message":
                    self.events.append(json.loads(message["data"]))

    def types(self) -> list[str]:
        return [str(e["type"]) for e in self.events]

    def close(self) -> None:
        self._closing.set()
        self.join(5)
        with contextlib.suppress(Exception):
            self.pubsub.close()
            self.client.close()


@contextlib.contextmanager
def running(thread: RedisEventTap) -> Iterator[RedisEventTap]:
    thread.start()
    try:
        yield thread
    finally:
        thread.close()
