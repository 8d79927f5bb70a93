"""The embedded worker pool: N worker processes, supervised by the server process.

The server owns the pool. It starts the workers (after handing interrupted jobs of
a previous run back to the queue), restarts any that die, releases jobs whose lease
ran out, relays the workers' events to the in-process bus, and on shutdown asks the
workers to hand their running jobs back to the queue before it exits.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import threading
from collections.abc import Callable
from typing import Any

from hark.config import Settings
from hark.db import Database
from hark.errors import HarkError
from hark.events.base import Event
from hark.jobs import service
from hark.jobs.repository import JobRepository
from hark.workers.identity import owner_gone
from hark.workers.process import worker_main

log = logging.getLogger("hark.workers")

SUPERVISE_SECONDS = 1.0
STOP_GRACE_SECONDS = 30.0


class PoolListener:
    """What the pool does with the workers' messages; the server fills these in."""

    def __init__(
        self, on_event: Callable[[str, Event], None],
        on_job_finished: Callable[[str, str, float, dict[str, float]], None] | None = None,
        on_model_loaded: Callable[[str], None] | None = None,
    ) -> None:
        self.on_event = on_event
        self.on_job_finished = on_job_finished
        self.on_model_loaded = on_model_loaded


class WorkerPool:
    def __init__(
        self, settings: Settings, db: Database, listener: PoolListener, *,
        count: int | None = None, queues: tuple[str, ...] | None = None,
    ) -> None:
        from hark.jobs.routing import QUEUES

        self.settings = _worker_settings(settings, count or settings.worker_count)
        self.db = db
        self.listener = listener
        self.expected = count or settings.worker_count
        self.queues = queues or QUEUES
        self._mp = multiprocessing.get_context("spawn")
        self._channel: Any = self._mp.Queue()
        self._stop = self._mp.Event()
        self._wakes = [self._mp.Event() for _ in range(self.expected)]
        self._processes: list[Any] = [None] * self.expected
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._workers_gone = threading.Event()

    # --- the JobQueue side -----------------------------------------------------------
    def enqueue(self, job_id: str, queue_name: str, priority: int,
                duration: float | None = None) -> None:
        for wake in self._wakes:
            wake.set()

    # --- lifecycle ------------------------------------------------------------------
    def start(self) -> None:
        self.recover_interrupted()
        for index in range(self.expected):
            self._spawn(index)
        for target, name in ((self._relay, "hark-worker-relay"),
                             (self._supervise, "hark-worker-supervisor")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info("started %d workers for queues %s", self.expected, ",".join(self.queues))

    def alive(self) -> int:
        return sum(1 for p in self._processes if p is not None and p.is_alive())

    def pids(self) -> list[int]:
        return [p.pid for p in self._processes if p is not None and p.pid is not None]

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """Ask the workers to hand back their jobs and exit; kill those that do not."""
        self._stopping.set()
        self._stop.set()
        for wake in self._wakes:
            wake.set()
        for process in self._processes:
            if process is not None:
                process.join(grace)
                if process.is_alive():
                    log.warning("worker pid %s did not stop in %.0f s; killing it",
                                process.pid, grace)
                    process.kill()
                    process.join(5)
        self._workers_gone.set()
        self._channel.put(None)
        for thread in self._threads:
            thread.join(5)
        # A killed worker's job is still marked running under it: hand it back now.
        self.recover_interrupted()

    def recover_interrupted(self) -> int:
        """Requeue (or fail, past the attempt limit) jobs of dead workers on this host."""
        recovered = 0
        with self.db.session(write=True) as session:
            for job in JobRepository(session).running():
                if not owner_gone(job.worker_id or ""):
                    continue
                status = service.recover(session, job, self.settings.job_max_attempts,
                                         "its worker process ended")
                recovered += 1
                self.listener.on_event(job.id, {"type": "status", "job_id": job.id,
                                                "status": status, "stage": job.stage,
                                                "progress": job.progress})
        if recovered:
            log.info("recovered %d interrupted jobs", recovered)
            self.enqueue("", "", 0)
        return recovered

    # --- internals --------------------------------------------------------------------
    def _spawn(self, index: int) -> None:
        process = self._mp.Process(
            target=worker_main, name=f"hark-worker-{index}",
            args=(self.settings.model_dump(mode="json"), index, self.queues, self._channel,
                  self._wakes[index], self._stop, os.getpid()),
            daemon=False)
        process.start()
        self._processes[index] = process

    def _relay(self) -> None:
        while True:
            try:
                message = self._channel.get(timeout=1.0)
            except queue.Empty:
                continue
            except (EOFError, OSError):
                return
            if message is None:
                return
            try:
                self._dispatch(message)
            except Exception:  # a listener bug must not stop event delivery
                log.exception("worker message %r could not be handled", message[0])

    def _dispatch(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "event":
            self.listener.on_event(message[1], message[2])
        elif kind == "job" and self.listener.on_job_finished is not None:
            self.listener.on_job_finished(*message[1:])
        elif kind == "load" and self.listener.on_model_loaded is not None:
            self.listener.on_model_loaded(message[1])

    def _supervise(self) -> None:
        try:
            self._supervise_loop()
        finally:
            # PR_SET_PDEATHSIG fires when the *thread* that started a process ends, so
            # returning now would kill the workers this thread restarted before they
            # hand their running jobs back. Stay until stop() has seen every worker out.
            self._workers_gone.wait()

    def _supervise_loop(self) -> None:
        lease_check = max(1.0, self.settings.job_lease_seconds / 2)
        since_lease_check = 0.0
        while not self._stopping.wait(SUPERVISE_SECONDS):
            for index, process in enumerate(self._processes):
                if process is not None and not process.is_alive() and not self._stopping.is_set():
                    log.warning("worker %d (pid %s) exited with %s; restarting it",
                                index, process.pid, process.exitcode)
                    self.recover_interrupted()
                    self._spawn(index)
            since_lease_check += SUPERVISE_SECONDS
            if since_lease_check >= lease_check:
                since_lease_check = 0.0
                self._recover_expired()

    def _recover_expired(self) -> None:
        try:
            with self.db.session(write=True) as session:
                jobs = service.recover_expired(session, self.settings.job_max_attempts)
                events = [(j.id, {"type": "status", "job_id": j.id, "status": j.status,
                                  "stage": j.stage, "progress": j.progress}) for j in jobs]
        except HarkError as exc:
            log.warning("lease check failed: %s", exc)
            return
        for job_id, event in events:
            self.listener.on_event(job_id, event)
        if events:
            self.enqueue("", "", 0)


def _worker_settings(settings: Settings, workers: int) -> Settings:
    """Each worker's share of the CPU for pocketsphinx's decoder processes."""
    if settings.asr_processes:
        return settings
    share = max(1, (os.cpu_count() or 1) // max(1, workers))
    return settings.model_copy(update={"asr_processes": share})

