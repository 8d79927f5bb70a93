"""`hark serve` as a real subprocess, for tests that need the whole process tree.

    with HarkServer(data_dir, log_dir, env={"HARK_WORKERS": "1"}) as server:
        server.start()
        httpx.get(server.url("/health/ready"))
        server.kill()          # SIGKILL the server process only (a crash)
        server.start()         # again, on the same data directory

The server runs in a new session (`start_new_session=True`), so every process it
starts (worker processes, their decoder pools) shares its process group, and
teardown kills the whole group even after the server process itself died. A watcher
thread also records every descendant it sees through psutil, and teardown kills any
of those still running, in case one of them left the group.

Each start writes stderr (the JSON log) and stdout to its own files under `log_dir`,
numbered by start, so a test can check the log of one run.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import TracebackType

import httpx
import psutil

from tests.support.common import free_port, wait_for

WATCH_SECONDS = 0.2
BIND_ATTEMPTS = 3


class ServerExited(RuntimeError):
    """`hark serve` ended before it was ready."""




def hark_command(*args: str) -> list[str]:
    """The `hark` CLI of the interpreter running the tests."""
    return [sys.executable, "-m", "hark", *args]


def clean_env(data_dir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The test's environment without any HARK_* setting, pointed at `data_dir`, with
    real Whisper (tiny.en, from its model package) as the default model."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HARK_")}
    env.update({"HARK_DATA_DIR": str(data_dir), "HARK_LOG_FORMAT": "json",
                "HARK_DEFAULT_MODEL": "tiny.en", "PYTHONUNBUFFERED": "1",
                # Rates are tested where they are set; keys' own rates still apply.
                "HARK_RATE_LIMIT": ""})
    env.update(extra or {})
    return env


def create_key(data_dir: Path, *, name: str = "test", tenant: str = "local",
               cwd: Path | None = None, max_priority: int = 0) -> dict[str, str]:
    """`hark keys create --json` against `data_dir`: id, name, tenant, key, webhook_secret."""
    data_dir.mkdir(parents=True, exist_ok=True)
    out = subprocess.run(hark_command("keys", "create", "--name", name, "--tenant", tenant,
                                      "--max-priority", str(max_priority), "--json"),
                         env=clean_env(data_dir), cwd=cwd or data_dir, capture_output=True,
                         text=True, timeout=60, check=True)
    info: dict[str, str] = json.loads(out.stdout)
    return info


class HarkServer:
    def __init__(self, data_dir: Path, log_dir: Path, *, env: dict[str, str] | None = None,
                 host: str = "127.0.0.1", workers: int = 1) -> None:
        self.data_dir = data_dir
        self.log_dir = log_dir
        self.env = env or {}
        self.host = host
        self.workers = workers
        self.port = 0
        self.runs = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path: Path = log_dir / "server-0.stderr.log"
        # Every process of every run that the watcher saw: killed at teardown.
        self._seen: dict[int, psutil.Process] = {}
        self._seen_lock = threading.Lock()
        self._groups: set[int] = set()
        self._stop_watch = threading.Event()
        self._watcher: threading.Thread | None = None
        data_dir.mkdir(parents=True, exist_ok=True)
        log_dir.mkdir(parents=True, exist_ok=True)

    # --- lifecycle ---------------------------------------------------------------------
    def start(self, timeout: float = 60.0) -> HarkServer:
        """Start `hark serve` on a free port and wait until /health/ready answers 200."""
        assert self.process is None or self.process.poll() is not None, "already running"
        self.runs += 1
        self.log_path = self.log_dir / f"server-{self.runs}.stderr.log"
        for attempt in range(BIND_ATTEMPTS):
            self._launch(append=attempt > 0)
            try:
                self._wait_ready(timeout)
                return self
            except ServerExited:
                # Another process took the free port before the server bound it: the
                # same run again (one log file) on another port.
                if "address already in use" in self.log_text().lower() \
                        and attempt + 1 < BIND_ATTEMPTS:
                    continue
                raise
        raise AssertionError("unreachable")

    def _serve_options(self) -> tuple[list[str], dict[str, str]]:
        """Extra `hark serve` arguments and environment (API replicas change them)."""
        return [], {"HARK_WORKERS": str(self.workers)}

    def _launch(self, *, append: bool) -> None:
        self.port = free_port(self.host)
        stdout_path = self.log_dir / f"server-{self.runs}.stdout.log"
        args, env_options = self._serve_options()
        env = clean_env(self.data_dir, {**env_options, **self.env})
        mode = "ab" if append else "wb"
        with open(self.log_path, mode) as stderr, open(stdout_path, mode) as stdout:
            # cwd: the data dir, so that no `.env` of the repository changes settings.
            self.process = subprocess.Popen(
                hark_command("serve", *args, "--host", self.host, "--port", str(self.port)),
                env=env, cwd=self.data_dir, stdout=stdout, stderr=stderr,
                stdin=subprocess.DEVNULL, start_new_session=True)
        self._groups.add(self.process.pid)
        self._remember(psutil.Process(self.process.pid))
        if self._watcher is None:
            self._watcher = threading.Thread(target=self._watch, name="hark-server-watch",
                                             daemon=True)
            self._watcher.start()

    def _wait_ready(self, timeout: float) -> None:
        assert self.process is not None
        process = self.process
        last = "no answer"

        def ready() -> bool:
            nonlocal last
            if process.poll() is not None:
                raise ServerExited(f"hark serve exited with {process.returncode}:\n"
                                   f"{self.log_tail()}")
            try:
                response = httpx.get(self.url("/health/ready"), timeout=2.0, trust_env=False)
            except httpx.HTTPError as exc:
                last = repr(exc)
                return False
            last = f"{response.status_code} {response.text}"
            return response.status_code == 200

        if not wait_for(ready, timeout, interval=0.1):
            raise RuntimeError(f"hark serve not ready after {timeout} s ({last}):\n"
                               f"{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL the server process only, as a crash would; its children are left."""
        assert self.process is not None
        self._remember_tree()
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def terminate(self, timeout: float = 60.0) -> None:
        """SIGTERM the server process only; the test fails if it has not exited within
        `timeout` seconds."""
        process = self.process
        assert process is not None
        self._remember_tree()
        process.send_signal(signal.SIGTERM)
        wait_for(lambda: process.poll() is not None, timeout, interval=0.1,
                 message=lambda: f"hark serve still running after SIGTERM:\n{self.log_tail()}")

    def stop(self) -> None:
        """Stop everything this helper started, gracefully if possible, then by force."""
        if self.process is not None and self.process.poll() is None:
            self._remember_tree()
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(20)
        self.kill_all()
        self._stop_watch.set()
        if self._watcher is not None:
            self._watcher.join(5)

    def kill_all(self) -> None:
        for group in self._groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGKILL)
        with self._seen_lock:
            seen = list(self._seen.values())
        for process in seen:
            # is_running() compares creation times: a reused pid is not ours to kill.
            with contextlib.suppress(psutil.Error):
                if process.is_running():
                    process.kill()
        psutil.wait_procs(seen, timeout=5)
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(5)

    def __enter__(self) -> HarkServer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # --- processes ---------------------------------------------------------------------
    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def descendants(self) -> list[psutil.Process]:
        """The running server's descendants (workers and their decoder processes)."""
        try:
            children: list[psutil.Process] = psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        return children

    def worker_pids(self) -> list[int]:
        """Direct children of the server that are worker processes (not helpers)."""
        try:
            children = psutil.Process(self.pid).children()
        except psutil.NoSuchProcess:
            return []
        pids = []
        for child in children:
            with contextlib.suppress(psutil.Error):
                if "multiprocessing.spawn" in " ".join(child.cmdline()):
                    pids.append(child.pid)
        return pids

    def survivors(self) -> list[psutil.Process]:
        """Processes this helper started (any run) that are still running."""
        self._remember_tree()
        with self._seen_lock:
            seen = list(self._seen.values())
        alive = []
        for process in seen:
            with contextlib.suppress(psutil.Error):
                if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                    alive.append(process)
        return alive

    def _remember(self, process: psutil.Process) -> None:
        with self._seen_lock:
            self._seen.setdefault(process.pid, process)

    def _remember_tree(self) -> None:
        if self.process is None:
            return
        for group in self._groups:
            for process in _in_session(group):
                self._remember(process)
        for process in self.descendants():
            self._remember(process)

    def _watch(self) -> None:
        while not self._stop_watch.wait(WATCH_SECONDS):
            with contextlib.suppress(Exception):
                self._remember_tree()

    # --- HTTP and logs -----------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def ws_url(self, path: str) -> str:
        return f"ws://{self.host}:{self.port}{path}"

    def client(self, *, key: str | None = None, timeout: float = 30.0) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout,
                            trust_env=False)

    def log_text(self, run: int | None = None) -> str:
        path = self.log_dir / f"server-{run or self.runs}.stderr.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


def _in_session(sid: int) -> list[psutil.Process]:
    """Every process of session `sid` (what start_new_session made), orphans included."""
    found = []
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error, ProcessLookupError, PermissionError):
            if os.getsid(process.pid) == sid:
                found.append(process)
    return found
