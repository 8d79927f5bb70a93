"""One embedded worker process: claim a job, run it, repeat, until told to stop.

Workers share nothing with the server but the database, the storage folder and
three pipes: a wake-up event (set when a job is submitted, so an idle worker starts
it at once rather than at its next poll), a stop event, and the channel that
carries events and metrics back to the server, which publishes them on its bus.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
from multiprocessing.synchronize import Event as MpEvent
from typing import Any

from hark.config import Settings
from hark.db import Database
from hark.errors import HarkError
from hark.events.base import Event
from hark.jobs.runner import WorkerContext, claim_and_run
from hark.pipeline.diarization.select import diarizer_cache
from hark.pipeline.engines.select import engine_cache
from hark.storage import open_storage
from hark.workers.identity import worker_id

log = logging.getLogger("hark.worker")

# An idle worker looks for work this often even without a wake-up, which picks up
# jobs submitted by other processes (another server on the same database).
IDLE_POLL_SECONDS = 2.0
OUTAGE_PAUSE_MAX_SECONDS = 30.0
_PR_SET_PDEATHSIG = 1


class QueueChannel:
    """A WorkerChannel over a multiprocessing queue read by the server's relay thread."""

    def __init__(self, queue: Any) -> None:
        self.queue = queue

    def publish(self, job_id: str, event: Event) -> None:
        self.queue.put(("event", job_id, event))

    def job_finished(self, model: str, status: str, audio_seconds: float,
                     timings: dict[str, float]) -> None:
        self.queue.put(("job", model, status, audio_seconds, timings))

    def model_loaded(self, model: str) -> None:
        self.queue.put(("load", model))


def worker_main(
    settings_data: dict[str, Any], index: int, queues: tuple[str, ...], channel: Any,
    wake: MpEvent, stop: MpEvent, parent_pid: int,
) -> None:
    _die_with_parent(parent_pid)
    # The server handles Ctrl-C and SIGTERM and tells workers through `stop`.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    settings = Settings(**settings_data)
    from hark.logs import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    db = Database(settings.database)
    ctx = WorkerContext(settings=settings, db=db, storage=open_storage(settings),
                        channel=QueueChannel(channel), worker_id=worker_id(index),
                        stopping=stop.is_set)
    log.info("worker %s started, queues %s", ctx.worker_id, ",".join(queues))
    pause = 0.0
    try:
        while not stop.is_set():
            wake.clear()
            try:
                ran = claim_and_run(ctx, queues)
                pause = 0.0
            except HarkError as exc:
                # The database or storage is away (a job it interrupted went back to
                # the queue): wait longer each time in a row, then try again.
                pause = min(max(pause * 2, 1.0), OUTAGE_PAUSE_MAX_SECONDS)
                log.warning("worker %s: %s; next try in %.0f s", ctx.worker_id, exc, pause)
                stop.wait(pause)
                continue
            if not ran:
                wake.wait(IDLE_POLL_SECONDS)
    finally:
        # Decoder pools are child processes: close them, or this process waits on them.
        engine_cache(settings).clear()
        diarizer_cache(settings).clear()
        db.dispose()
        log.info("worker %s stopped", ctx.worker_id)


def _die_with_parent(parent_pid: int) -> None:
    """Ask Linux to kill this process when the server dies, so that a killed server
    never leaves a worker finishing a job the next server will run again."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        except OSError:
            pass
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(1)
