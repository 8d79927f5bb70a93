"""Running one claimed job: the same pipeline the CLI calls, plus the job's bookkeeping.

Embedded workers (`claim_and_run`) and scaled mode's queue workers (`run_for_message`)
both end here; they differ in the `WorkerChannel` that carries events and metrics back
to the API processes. A job submitted by URL is fetched first (stage `fetching`), under
the same address, size and time rules as anything Hark downloads.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from hark.errors import (
    CanceledError,
    DatabaseError,
    HarkError,
    JobTimeoutError,
    MediaError,
    OptionError,
    StorageError,
    WorkerLostError,
)
from hark.events.base import Event
from hark.filenames import about_file
from hark.jobs import events, outcome, service
from hark.jobs.context import WorkerChannel, WorkerContext
from hark.jobs.keys import media_key
from hark.jobs.lease import ShutdownRequested, Watch
from hark.jobs.models import FAILED, Job
from hark.jobs.routing import time_limit
from hark.jobs.schemas import JobOptions, KnownSpeaker
from hark.jobs.service import Claim
from hark.net.fetch import SOURCE_URL_FIELD, fetch
from hark.pipeline.diarization.identify import VoiceProfile
from hark.pipeline.engines.select import engine_cache
from hark.pipeline.media import probe
from hark.pipeline.run import Hooks, transcribe_file
from hark.pipeline.transcript import Transcript

__all__ = ["WorkerChannel", "WorkerContext", "claim_and_run", "run_for_message"]

log = logging.getLogger("hark.worker")

# Failures of the service around a job, not of the job: it goes back to the queue and
# the exception goes on to the worker's loop, which waits before taking work again.
OUTAGES = (DatabaseError, StorageError)
# Of a URL job's progress, the share its download stands for.
FETCH_SHARE = 0.1


def claim_and_run(ctx: WorkerContext, queues: tuple[str, ...]) -> bool:
    """Claim the next job of `queues` (tenants taking turns) and run it; False when
    there was none."""
    with ctx.db.session(write=True) as session:
        claimed = _claimed(ctx, service.claim_next(session, queues, ctx.worker_id,
                                                   ctx.settings.job_lease_seconds))
    return _run_claimed(ctx, claimed)


def run_for_message(ctx: WorkerContext, job_id: str, owner_gone: Callable[[str], bool]) -> bool:
    """Run a job for a queue message naming `job_id`; False when there was nothing to do.

    A message stands for one job's worth of work in its job's queue, not for that job:
    the named job is recovered if its worker died (a redelivered message), and then the
    next job of the queue is claimed as embedded workers claim it, so tenants take
    turns in scaled mode too. Every queued job has a message, so none is left behind.
    """
    with ctx.db.session(write=True) as session:
        named, recovered = service.recover_if_orphaned(
            session, job_id, ctx.settings.job_max_attempts, owner_gone)
        failed = named if recovered == FAILED and named is not None else None
        claimed = None
        if named is not None and failed is None:
            claimed = _claimed(ctx, service.claim_next(
                session, (named.queue,), ctx.worker_id, ctx.settings.job_lease_seconds))
        failed_event = events.failed(failed.id, failed.error) if failed is not None else None
    if failed_event is not None:
        ctx.channel.publish(job_id, failed_event)
    return _run_claimed(ctx, claimed)


@dataclass(frozen=True)
class _Snapshot:
    tenant_id: str
    options: dict[str, Any]
    model: str
    queue: str
    media_key: str | None
    source_url: str | None
    filename: str
    duration: float | None
    has_webhook: bool

    @classmethod
    def of(cls, job: Job) -> _Snapshot:
        return cls(job.tenant_id, dict(job.options), job.model, job.queue, job.media_key,
                   job.source_url, job.filename, job.duration, bool(job.webhook_url))


def _claimed(ctx: WorkerContext, job: Job | None) -> tuple[Claim, _Snapshot, Event] | None:
    """What running a just-claimed job needs, read while its session is open."""
    if job is None:
        return None
    return (Claim(job.id, ctx.worker_id, job.attempts), _Snapshot.of(job),
            events.status(job.id, job.status, job.stage, job.progress))


def _run_claimed(ctx: WorkerContext, claimed: tuple[Claim, _Snapshot, Event] | None) -> bool:
    """Announce and run the job once its claim is committed."""
    if claimed is None:
        return False
    claim, snapshot, event = claimed
    ctx.channel.publish(claim.job_id, event)
    run_job(ctx, claim, snapshot)
    return True


def run_job(ctx: WorkerContext, claim: Claim, job: _Snapshot) -> None:
    watch = Watch(ctx, claim, time_limit(job.queue, job.duration))
    watch.start()
    loads_before = engine_cache(ctx.settings).loads
    try:
        try:
            transcript = _transcribe(ctx, claim, job, watch)
        finally:
            watch.stop()
    except ShutdownRequested:
        outcome.handed_back(ctx, claim)
        return
    except CanceledError:
        # Canceled or taken over: whoever changed the job has told its subscribers.
        return
    except OUTAGES:
        outcome.handed_back(ctx, claim)
        raise
    except WorkerLostError:
        # A decoder process died (killed, out of memory): the engine is dropped so the
        # next job starts a fresh pool, and this one runs again.
        log.warning("job %s: a decoder process died; the job will run again", claim.job_id)
        engine_cache(ctx.settings).clear()
        outcome.crashed(ctx, claim, "a decoder process died")
        return
    except HarkError as exc:
        outcome.failed(ctx, claim, job.model, exc, job.has_webhook)
        return
    except Exception as exc:  # a bug or an engine crash: fail the job, keep the worker
        if isinstance(exc, ctx.timeout_errors):
            error: HarkError = JobTimeoutError("the job ran past its time limit")
        else:
            log.exception("job %s failed unexpectedly", claim.job_id)
            error = HarkError(f"internal error: {type(exc).__name__}: {exc}")
        outcome.failed(ctx, claim, job.model, error, job.has_webhook)
        return
    if engine_cache(ctx.settings).loads > loads_before:
        ctx.channel.model_loaded(transcript.model)
    try:
        outcome.completed(ctx, claim, transcript, job.has_webhook)
    except OUTAGES:
        outcome.handed_back(ctx, claim)
        raise


def _transcribe(ctx: WorkerContext, claim: Claim, job: _Snapshot, watch: Watch) -> Transcript:
    job_options = JobOptions.model_validate(job.options)
    options = job_options.pipeline_options(job.model)
    profiles = _profiles(ctx, job, job_options) if options.identify_speakers else []
    key, filename, share = job.media_key, job.filename, 0.0
    if key is None:
        if job.source_url is None:
            raise HarkError("the job's media was purged before it ran")
        key, filename = _fetch(ctx, claim, job.source_url, watch)
        share = FETCH_SHARE

    def on_progress(stage: str, value: float) -> None:
        watch.on_progress(stage, share + (1.0 - share) * value)

    hooks = Hooks(on_progress=on_progress, on_segment=watch.on_segment,
                  is_canceled=watch.is_canceled)
    with ctx.storage.local_path(key) as path:
        try:
            return transcribe_file(path, options, ctx.settings, hooks, profiles)
        except MediaError as exc:  # about the person's file, not the stored "source"
            raise about_file(exc, path.name, filename) from exc


def _fetch(ctx: WorkerContext, claim: Claim, url: str, watch: Watch) -> tuple[str, str]:
    """Download a URL job's recording into storage, probe it, and record it on the job."""
    settings, key = ctx.settings, media_key(claim.job_id)
    watch.on_progress("fetching", 0.0)

    def on_bytes(received: int, expected: int | None) -> None:
        if watch.is_canceled():
            raise CanceledError("the job was canceled while its recording was fetched")
        # Written (at most twice a second) even when the size is unknown: the fenced
        # write is also how a cancel is noticed.
        fraction = min(1.0, received / expected) if expected else 0.0
        watch.on_progress("fetching", FETCH_SHARE * fraction)

    try:
        with ctx.storage.writer(key) as writer:
            result = fetch(url, writer, max_bytes=settings.max_upload_bytes,
                           timeout=settings.fetch_timeout_seconds,
                           allowed_networks=settings.fetch_allowed_networks,
                           on_progress=on_bytes)
            writer.commit()
        with ctx.storage.local_path(key) as path:
            try:
                info = probe(path, max_seconds=settings.max_audio_seconds)
            except MediaError as exc:
                raise about_file(exc, path.name, result.filename,
                                 field=SOURCE_URL_FIELD) from exc
        recorded = outcome.final_write(ctx, lambda session: service.record_fetched(
            session, claim, key=key, filename=result.filename, size=result.size,
            duration=round(info.duration, 3)))
    except BaseException:
        ctx.storage.delete_prefix(key)
        raise
    if not recorded:
        ctx.storage.delete_prefix(key)
        raise CanceledError("the job was canceled while its recording was fetched")
    return key, result.filename


def _profiles(ctx: WorkerContext, job: _Snapshot,
              options: JobOptions) -> list[VoiceProfile]:
    if options.known_speakers is not None:
        # Voices sent with the request: they replace the tenant's enrolled profiles.
        return known_profiles(options.known_speakers)
    from hark.speakers.service import profiles_for_matching

    with ctx.db.session() as session:
        return profiles_for_matching(session, job.tenant_id, embedder=ctx.settings.diarizer)


def known_profiles(speakers: list[KnownSpeaker]) -> list[VoiceProfile]:
    sizes = {len(s.embedding) for s in speakers}
    if len(sizes) > 1:
        raise OptionError("the known speakers' embeddings differ in size",
                          field="known_speakers")
    return [VoiceProfile(id=f"known-{index}", name=speaker.name,
                         embedding=np.asarray(speaker.embedding, dtype=np.float32))
            for index, speaker in enumerate(speakers)]
