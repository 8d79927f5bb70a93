"""How the API tells workers that a job is waiting.

In embedded mode the database *is* the queue and this only wakes idle workers; in
scaled mode an implementation sends the job id to the broker.
"""

from __future__ import annotations

from typing import Protocol


class JobQueue(Protocol):
    def enqueue(self, job_id: str, queue_name: str, priority: int,
                duration: float | None = None) -> None: ...


class NoWorkers:
    """`hark serve --no-worker` in embedded mode: jobs wait in the database for a
    worker process elsewhere."""

    def enqueue(self, job_id: str, queue_name: str, priority: int,
                duration: float | None = None) -> None:
        return None
