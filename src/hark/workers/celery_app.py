"""Scaled mode's workers: Celery on the broker at HARK_BROKER_URL.

A task carries a job id and nothing else: it stands for one job's worth of work in that
job's queue. The worker recovers the named job if its worker died, then claims the next
job of the queue as embedded workers do (tenants taking turns, see `run_for_message`),
and runs it with the same runner. Delivery is at least once
(`acks_late`, a message whose worker died is redelivered); the claim and the fenced
completion in the job service make the *outcome* exactly once, whatever the number
of deliveries. Each worker process builds its database engine, storage client and
models once and keeps them.

Queues are `hark.small`, `hark.medium` and `hark.large` (the model size classes).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import Celery, Task
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_process_shutdown

from hark.config import Settings, get_settings
from hark.errors import DatabaseError, HarkError, StorageError
from hark.jobs.routing import time_limit
from hark.jobs.runner import WorkerContext, run_for_message
from hark.workers.identity import owner_gone, worker_id

log = logging.getLogger("hark.worker")

TASK_NAME = "hark.run_job"
QUEUE_PREFIX = "hark."
# Beyond a job's own time limit (enforced by its runner, see `hark.jobs.lease`), Celery
# kills a task stuck where the runner cannot see it: past the limit of the longest job
# the queue may hold, since a message may run any job of its queue.
HARD_LIMIT_GRACE_SECONDS = 60.0
# Transient failures (database or storage unreachable) are retried with backoff.
MAX_RETRIES = 8


def queue_name(size_class: str) -> str:
    return QUEUE_PREFIX + size_class


def time_limits(size_class: str, max_audio_seconds: float) -> tuple[float, float]:
    """(soft, hard) limits in seconds for a message of the `size_class` queue."""
    soft = time_limit(size_class, max_audio_seconds) + HARD_LIMIT_GRACE_SECONDS
    return soft, soft + HARD_LIMIT_GRACE_SECONDS


def celery_priority(priority: int) -> int:
    """Job priority (-100..100, higher first) → Redis priority step (0..9, 0 first)."""
    return max(0, min(9, round((100 - priority) / 200 * 9)))


def make_celery(settings: Settings) -> Celery:
    app = Celery("hark", broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        task_default_queue=queue_name("small"),
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        broker_transport_options={
            # A message whose worker vanished without a word comes back after this;
            # the job lease (and the API's reconciler) usually recover it sooner.
            "visibility_timeout": max(60, int(settings.broker_visibility_seconds)),
            "queue_order_strategy": "priority",
            "priority_steps": list(range(10)),
        },
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,
    )
    app.task(name=TASK_NAME, bind=True, max_retries=MAX_RETRIES)(_run_job_task)
    return app


_context: WorkerContext | None = None
_context_pid = 0


def worker_context() -> WorkerContext:
    """This process's database, storage and event channel, made on first use (so each
    forked pool process makes its own)."""
    global _context, _context_pid
    if _context is None or _context_pid != os.getpid():
        from hark.db import Database
        from hark.events.redis import RedisWorkerChannel
        from hark.storage import open_storage

        settings = get_settings()
        url = settings.events_redis_url
        if url is None:
            raise HarkError("scaled mode needs Redis for events: set HARK_BROKER_URL to a "
                            "redis:// URL or HARK_EVENTS_URL")
        _context = WorkerContext(settings=settings, db=Database(settings.database),
                                 storage=open_storage(settings),
                                 channel=RedisWorkerChannel(url),
                                 worker_id=worker_id("celery"),
                                 timeout_errors=(SoftTimeLimitExceeded,))
        _context_pid = os.getpid()
    return _context


@worker_process_shutdown.connect
def _flush_events(**_: Any) -> None:
    """Send events still queued (a job's `completed`, say) before the process exits."""
    if _context is not None and _context_pid == os.getpid():
        flush = getattr(_context.channel, "flush", None)
        if flush is not None:
            flush(5.0)


def _run_job_task(task: Task, job_id: str) -> bool:
    try:
        return run_for_message(worker_context(), job_id, owner_gone)
    except (DatabaseError, StorageError) as exc:
        retries: int = task.request.retries
        log.warning("job %s: %s; retrying (%d)", job_id, exc, retries + 1)
        raise task.retry(exc=exc, countdown=min(60, 2 ** retries)) from exc


class CeleryQueue:
    """The JobQueue of scaled mode: one message per job on its size class's queue."""

    def __init__(self, app: Celery, max_audio_seconds: float) -> None:
        self.app = app
        self.max_audio_seconds = max_audio_seconds

    def enqueue(self, job_id: str, queue_name_: str, priority: int,
                duration: float | None = None) -> None:
        soft, hard = time_limits(queue_name_, self.max_audio_seconds)
        try:
            self.app.send_task(TASK_NAME, args=[job_id], queue=queue_name(queue_name_),
                               priority=celery_priority(priority), soft_time_limit=soft,
                               time_limit=hard, retry=True,
                               retry_policy={"max_retries": 3, "interval_start": 0.2,
                                             "interval_step": 0.5, "interval_max": 2})
        except Exception as exc:  # the job is safe in the database: the reconciler re-sends
            log.warning("job %s: broker unavailable (%s); it will be sent again", job_id, exc)
