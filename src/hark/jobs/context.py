"""What a worker process gives the jobs it runs: settings, database, storage, and the
channel that carries events and metrics back to the API processes (a multiprocessing
queue in embedded mode, Redis in scaled mode)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from hark.config import Settings
from hark.db import Database
from hark.events.base import Event
from hark.storage.base import Storage


class WorkerChannel(Protocol):
    """Where a worker sends what the API processes need to hear."""

    def publish(self, job_id: str, event: Event) -> None: ...

    def job_finished(self, model: str, status: str, audio_seconds: float,
                     timings: dict[str, float]) -> None: ...

    def model_loaded(self, model: str) -> None: ...


@dataclass
class WorkerContext:
    settings: Settings
    db: Database
    storage: Storage
    channel: WorkerChannel
    worker_id: str
    stopping: Callable[[], bool] = lambda: False
    # Exceptions a queue worker raises into a job that ran too long.
    timeout_errors: tuple[type[BaseException], ...] = ()
