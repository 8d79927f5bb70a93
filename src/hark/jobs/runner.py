"""Running one claimed job: the same pipeline the CLI calls, plus the job's bookkeeping.

Embedded workers and (in scaled mode) queue workers both call `run_job`; they differ
in the `WorkerChannel` that carries events and metrics back to the API processes.
A lease-renewing heartbeat thread runs beside the pipeline; the pipeline's cancel
hook stops it at the next chunk when the job was canceled, the lease was lost, or
the worker is shutting down.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np
from sqlalchemy.orm import Session

from hark.config import Settings
from hark.db import Database
from hark.errors import (
    CanceledError,
    DatabaseError,
    HarkError,
    JobTimeoutError,
    MediaError,
    OptionError,
    StorageError,
)
from hark.events.base import Event
from hark.filenames import about_file
from hark.jobs import service
from hark.jobs.models import Job
from hark.jobs.schemas import JobOptions, KnownSpeaker
from hark.jobs.service import Claim
from hark.pipeline.diarization.identify import VoiceProfile
from hark.pipeline.engines.select import engine_cache
from hark.pipeline.run import Hooks, transcribe_file
from hark.pipeline.transcript import Segment, Transcript
from hark.storage.base import Storage

log = logging.getLogger("hark.worker")

RESULT_PREFIX = "results"
# How often a running job writes its progress to the database, and checks for cancel.
PROGRESS_WRITE_SECONDS = 0.5
CANCEL_CHECK_SECONDS = 0.5
# Failures of the service around a job, not of the job: it goes back to the queue and
# the exception goes on to the worker's loop, which waits before taking work again.
OUTAGES = (DatabaseError, StorageError)
# Waits between tries of a job's final write while the database is away.
FINAL_WRITE_BACKOFF = (0.5, 1.0, 2.0, 4.0, 8.0)


class WorkerChannel(Protocol):
    """Where a worker sends what the API processes need to hear."""

    def publish(self, job_id: str, event: Event) -> None: ...

    def job_finished(self, model: str, status: str, audio_seconds: float,
                     timings: dict[str, float]) -> None: ...

    def model_loaded(self, model: str) -> None: ...


class ShutdownRequested(Exception):
    """The worker is stopping; its running job goes back to the queue."""


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


def result_key(job_id: str, attempt: int) -> str:
    """Each attempt writes its own object, so a losing attempt can remove what it wrote
    without touching the winner's."""
    return f"{RESULT_PREFIX}/{job_id}/transcript-{attempt}.json"


def results_prefix(job_id: str) -> str:
    return f"{RESULT_PREFIX}/{job_id}"


def status_event(job: Job) -> Event:
    return {"type": "status", "job_id": job.id, "status": job.status, "stage": job.stage,
            "progress": job.progress}


def claim_and_run(ctx: WorkerContext, queues: tuple[str, ...]) -> bool:
    """Claim the next job of `queues` and run it; False when there was none."""
    with ctx.db.session(write=True) as session:
        claimed = _claimed(ctx, service.claim_next(session, queues, ctx.worker_id,
                                                   ctx.settings.job_lease_seconds))
    return _run_claimed(ctx, claimed)


def run_named(ctx: WorkerContext, job_id: str, owner_gone: Callable[[str], bool]) -> bool:
    """Claim and run the job a queue message names; False when there was nothing to do
    (finished, canceled, or running under a live worker: a duplicate message)."""
    with ctx.db.session(write=True) as session:
        claimed = _claimed(ctx, service.claim_job(
            session, job_id, ctx.worker_id, ctx.settings.job_lease_seconds,
            ctx.settings.job_max_attempts, owner_gone))
    return _run_claimed(ctx, claimed)


def _claimed(ctx: WorkerContext, job: Job | None) -> tuple[Claim, _Snapshot, Event] | None:
    """What running a just-claimed job needs, read while its session is open."""
    if job is None:
        return None
    if job.status != "running":  # claim_job failed it: interrupted too many times
        ctx.channel.publish(job.id, {"type": "failed", "job_id": job.id,
                                     "status": job.status, "error": job.error})
        return None
    return Claim(job.id, ctx.worker_id, job.attempts), _Snapshot.of(job), status_event(job)


def _run_claimed(ctx: WorkerContext, claimed: tuple[Claim, _Snapshot, Event] | None) -> bool:
    """Announce and run the job once its claim is committed."""
    if claimed is None:
        return False
    claim, snapshot, event = claimed
    ctx.channel.publish(claim.job_id, event)
    run_job(ctx, claim, snapshot)
    return True


@dataclass(frozen=True)
class _Snapshot:
    tenant_id: str
    options: dict[str, Any]
    model: str
    media_key: str | None
    filename: str
    has_webhook: bool

    @classmethod
    def of(cls, job: Job) -> _Snapshot:
        return cls(job.tenant_id, dict(job.options), job.model, job.media_key, job.filename,
                   bool(job.webhook_url))


def run_job(ctx: WorkerContext, claim: Claim, job: _Snapshot) -> None:
    watch = _Watch(ctx, claim)
    watch.start()
    loads_before = engine_cache(ctx.settings).loads
    try:
        transcript = _transcribe(ctx, job, watch)
    except ShutdownRequested:
        watch.stop()
        _hand_back(ctx, claim)
        return
    except CanceledError:
        watch.stop()
        # Canceled or taken over: whoever changed the job has told its subscribers.
        return
    except OUTAGES:
        watch.stop()
        _hand_back(ctx, claim)
        raise
    except HarkError as exc:
        watch.stop()
        _finish_failed(ctx, claim, job, exc)
        return
    except Exception as exc:  # a bug or an engine crash: fail the job, keep the worker
        watch.stop()
        if isinstance(exc, ctx.timeout_errors):
            error: HarkError = JobTimeoutError("the job ran past its time limit")
        else:
            log.exception("job %s failed unexpectedly", claim.job_id)
            error = HarkError(f"internal error: {type(exc).__name__}: {exc}")
        _finish_failed(ctx, claim, job, error)
        return
    watch.stop()
    if engine_cache(ctx.settings).loads > loads_before:
        ctx.channel.model_loaded(transcript.model)
    try:
        _finish_completed(ctx, claim, job, transcript)
    except OUTAGES:
        _hand_back(ctx, claim)
        raise


def _hand_back(ctx: WorkerContext, claim: Claim) -> None:
    """Return the job to the queue without counting this attempt against it.

    For a worker that stops, and for outages of the database or storage: neither is the
    job's doing, so neither should use up the attempts meant for jobs that crash
    their worker. (The caller re-raises an outage: whoever runs the worker waits
    before it takes the next job, see `OUTAGES`.)
    """
    released = _final_write(ctx, lambda session: service.release(session, claim,
                                                                 count_attempt=False))
    if released:
        ctx.channel.publish(claim.job_id, {"type": "status", "job_id": claim.job_id,
                                           "status": "queued", "stage": None,
                                           "progress": 0.0})


def _transcribe(ctx: WorkerContext, job: _Snapshot, watch: _Watch) -> Transcript:
    job_options = JobOptions.model_validate(job.options)
    options = job_options.pipeline_options(job.model)
    profiles: list[VoiceProfile] = []
    if options.identify_speakers and job_options.known_speakers is not None:
        # Voices sent with the request: they replace the tenant's enrolled profiles.
        profiles = known_profiles(job_options.known_speakers)
    elif options.identify_speakers:
        from hark.speakers.service import profiles_for_matching

        with ctx.db.session() as session:
            profiles = profiles_for_matching(session, job.tenant_id,
                                             embedder=ctx.settings.diarizer)
    if job.media_key is None:
        raise HarkError("the job's media was purged before it ran")
    hooks = Hooks(on_progress=watch.on_progress, on_segment=watch.on_segment,
                  is_canceled=watch.is_canceled)
    with ctx.storage.local_path(job.media_key) as path:
        try:
            return transcribe_file(path, options, ctx.settings, hooks, profiles)
        except MediaError as exc:  # about the person's file, not the stored "source"
            raise about_file(exc, path.name, job.filename) from exc


def known_profiles(speakers: list[KnownSpeaker]) -> list[VoiceProfile]:
    sizes = {len(s.embedding) for s in speakers}
    if len(sizes) > 1:
        raise OptionError("the known speakers' embeddings differ in size",
                          field="known_speakers")
    return [VoiceProfile(id=f"known-{index}", name=speaker.name,
                         embedding=np.asarray(speaker.embedding, dtype=np.float32))
            for index, speaker in enumerate(speakers)]


def _finish_completed(ctx: WorkerContext, claim: Claim, job: _Snapshot,
                      transcript: Transcript) -> None:
    key = result_key(claim.job_id, claim.attempt)
    # Written before the fenced commit, so a committed job always has its result.
    ctx.storage.put_bytes(key, json.dumps(transcript.to_dict(), ensure_ascii=False).encode())
    won = _final_write(ctx, lambda session: service.complete(
        session, claim, result_key=key, duration=transcript.duration, model=transcript.model,
        language=transcript.language, timings=transcript.timings,
        warnings=transcript.warnings, has_webhook=job.has_webhook))
    if not won:
        ctx.storage.delete_prefix(key)
        log.info("job %s: result discarded, the job was canceled or reassigned", claim.job_id)
        return
    ctx.channel.publish(claim.job_id, {
        "type": "completed", "job_id": claim.job_id, "status": "completed", "progress": 1.0,
        "duration": transcript.duration, "language": transcript.language,
        "model": transcript.model, "segments": len(transcript.segments),
        "timings": transcript.timings, "warnings": transcript.warnings})
    ctx.channel.job_finished(transcript.model, "completed", transcript.duration,
                             transcript.timings)
    # An earlier attempt may have stored its result and then lost its completion write.
    try:
        for attempt in range(1, claim.attempt):
            ctx.storage.delete_prefix(result_key(claim.job_id, attempt))
    except StorageError as exc:  # the job is done; purge removes what stays behind
        log.warning("job %s: could not remove an earlier attempt's result: %s",
                    claim.job_id, exc)


def _finish_failed(ctx: WorkerContext, claim: Claim, job: _Snapshot, error: HarkError) -> None:
    won = _final_write(ctx, lambda session: service.fail(session, claim, error,
                                                         has_webhook=job.has_webhook))
    if won:
        ctx.channel.publish(claim.job_id, {"type": "failed", "job_id": claim.job_id,
                                           "status": "failed",
                                           "error": service.error_body(error)})
        ctx.channel.job_finished(job.model, "failed", 0.0, {})


def _final_write(ctx: WorkerContext, write: Callable[[Session], bool]) -> bool:
    """Record a job's outcome, trying again while the database is away.

    An hour of transcription should not be lost to a database restart: the write is
    retried for as long as the job's lease would have lasted. It is fenced, so a try
    that comes after another attempt took the job over is refused (False), not applied.
    """
    deadline = time.monotonic() + ctx.settings.job_lease_seconds
    delays = iter(FINAL_WRITE_BACKOFF)
    while True:
        try:
            with ctx.db.session(write=True) as session:
                return write(session)
        except DatabaseError as exc:
            delay = next(delays, FINAL_WRITE_BACKOFF[-1])
            if time.monotonic() + delay > deadline:
                raise
            log.warning("could not record the outcome (%s); trying again in %.1f s",
                        exc, delay)
            time.sleep(delay)


class _Watch:
    """The running job's heartbeat, progress writer and cancel check."""

    def __init__(self, ctx: WorkerContext, claim: Claim) -> None:
        self.ctx = ctx
        self.claim = claim
        self.lost = threading.Event()
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="hark-job-lease", daemon=True)
        self._last_write = 0.0
        self._last_stage: str | None = None
        self._last_check = time.monotonic()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.done.set()
        self._thread.join()

    def _beat(self) -> None:
        interval = self.ctx.settings.job_lease_seconds / 3
        while not self.done.wait(interval):
            try:
                with self.ctx.db.session(write=True) as session:
                    held = service.renew_lease(session, self.claim,
                                               self.ctx.settings.job_lease_seconds)
            except HarkError:
                log.warning("job %s: could not renew the lease", self.claim.job_id)
                continue
            if not held:
                self.lost.set()
                return

    def is_canceled(self) -> bool:
        if self.ctx.stopping():
            raise ShutdownRequested
        if self.lost.is_set():
            return True
        now = time.monotonic()
        if now - self._last_check >= CANCEL_CHECK_SECONDS:
            self._last_check = now
            try:
                with self.ctx.db.session() as session:
                    job = session.get(Job, self.claim.job_id)
                    if job is None or job.status != "running" or \
                            job.attempts != self.claim.attempt:
                        self.lost.set()
            except DatabaseError as exc:
                # The database is away: keep transcribing, and look again next time.
                log.warning("job %s: cannot check for a cancel: %s", self.claim.job_id, exc)
        return self.lost.is_set()

    def on_progress(self, stage: str, progress: float) -> None:
        now = time.monotonic()
        if stage == self._last_stage and now - self._last_write < PROGRESS_WRITE_SECONDS:
            return
        self._last_stage, self._last_write = stage, now
        try:
            with self.ctx.db.session(write=True) as session:
                held = service.record_progress(session, self.claim, stage, progress)
        except DatabaseError as exc:
            # Progress is advisory; the outcome is what must be recorded (see _final_write).
            log.warning("job %s: cannot record progress: %s", self.claim.job_id, exc)
            held = True
        if not held:
            self.lost.set()
            return
        self.ctx.channel.publish(self.claim.job_id, {
            "type": "progress", "job_id": self.claim.job_id, "stage": stage,
            "progress": round(progress, 4)})

    def on_segment(self, segment: Segment) -> None:
        self.ctx.channel.publish(self.claim.job_id, {
            "type": "segment", "job_id": self.claim.job_id, "segment": asdict(segment)})
