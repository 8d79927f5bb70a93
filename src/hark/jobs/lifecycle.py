"""What a person does to a job once it exists: cancel it, purge it, run it again.

Like the intake, these take the request's session and never commit; announcements and
storage deletions are after-commit actions, so an undone change leaves no trace. A
cancel and a purge each record an audit event in the same transaction.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from sqlalchemy.orm import Session

from hark.accounts import policy
from hark.audit import service as audit
from hark.audit.actor import request_actor
from hark.audit.models import JOB_CANCELED, JOB_PURGED
from hark.db.base import new_id
from hark.db.hooks import after_commit
from hark.errors import JobPurgedError, JobStateError
from hark.jobs import events, feed, intake, service
from hark.jobs.keys import media_key, results_prefix
from hark.jobs.models import CANCELED, FAILED, Job
from hark.jobs.schemas import JobOut
from hark.principal import Principal
from hark.runtime import ServiceState
from hark.transcripts import service as revisions

RETRYABLE = (FAILED, CANCELED)
COPY_CHUNK_BYTES = 1024 * 1024


def cancel(session: Session, state: ServiceState, principal: Principal, job_id: str, *,
           purge: bool = False) -> Job:
    """Cancel a queued or running job (a running one stops at its next chunk); with
    `purge`, also delete its recording, results, edits and search index."""
    policy.check_manages(principal, service.get_job(session, principal.tenant_id,
                                                    job_id).user_id)
    job, changed = service.cancel_job(session, principal.tenant_id, job_id)
    actor = request_actor(principal)
    if changed:
        audit.record(session, actor, tenant_id=principal.tenant_id, action=JOB_CANCELED,
                     target_type="job", target_id=job.id)
        after_commit(session, lambda: state.bus.publish(job_id, events.canceled(job_id)))
    if purge:
        if not job.purged:  # purging again deletes nothing new: not a second event
            audit.record(session, actor, tenant_id=principal.tenant_id, action=JOB_PURGED,
                         target_type="job", target_id=job.id)
        keys = [k for k in (job.media_key, results_prefix(job.id)) if k]
        service.mark_purged(job)
        revisions.forget(session, job.id)  # edits and search index: text of the recording
        shown = JobOut.of(job).model_dump(mode="json")
        tenant = principal.tenant_id
        after_commit(session, lambda: feed.publish(state.bus, tenant, feed.PURGED, shown))
        for key in keys:
            after_commit(session, partial(state.storage.delete_prefix, key))
    return job


def retry(session: Session, state: ServiceState, principal: Principal, job_id: str) -> Job:
    """A new job from a failed or canceled one's recording and options.

    The recording is copied under the new job's own key rather than shared, so purging
    either job never takes the other's media with it. A job without its recording is
    run again from its source URL; one from an upload is refused (410 JOB_PURGED). The
    old job stays as it was (its error is history).
    """
    job = service.get_job(session, principal.tenant_id, job_id)
    policy.check_manages(principal, job.user_id)
    if job.status not in RETRYABLE:
        raise JobStateError(f"only a failed or canceled job can be retried; this one is "
                            f"{job.status}", status=job.status)
    fields: dict[str, Any] = dict(job.options)
    if job.webhook_url:
        fields["webhook_url"] = job.webhook_url
    checked = intake.check_options(fields, state)
    if job.media_key is None:
        # No recording here: never fetched, purged, or deleted by the retention. A URL
        # job's source still says where it is, so the new job fetches it again (the
        # worker's `fetching` stage), whether or not this one was purged.
        if job.source_url:
            return intake.submit_url(session, state, principal, job.source_url, checked)
        # An upload's bytes existed only here: gone for good, not "not ready yet".
        raise JobPurgedError("the job's recording was deleted (purged) and came from an "
                             "upload, not a URL: submit the recording again",
                             status=job.status)
    retry_id = new_id()
    key = media_key(retry_id)
    with state.storage.local_path(job.media_key) as path, open(path, "rb") as source, \
            state.storage.writer(key) as writer:
        while chunk := source.read(COPY_CHUNK_BYTES):
            writer.write(chunk)
        writer.commit()
        size = writer.size
    return intake.submit_stored(session, state, principal, job_id=retry_id, key=key,
                                filename=job.filename, size=size, checked=checked)
