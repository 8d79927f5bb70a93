"""Getting a recording into a job: stored media (a multipart upload, a filled upload
slot, a retry's copy) or a source URL, which a worker fetches. Every function takes the
request's session first and never commits: the edge that owns the session does, and
what must wait for that commit (the feed's announcement, the queue message) is
registered as an after-commit action. Stored media of a submission that fails, or whose
transaction is rolled back, is deleted: nothing stays in storage for a job that is not.
Every submission records a `job.created` audit event in its transaction.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

from hark.audit import service as audit
from hark.audit.actor import request_actor
from hark.audit.models import JOB_CREATED
from hark.db.base import new_id, utcnow
from hark.db.hooks import after_commit, after_rollback
from hark.errors import (
    MediaError,
    PriorityNotAllowedError,
    RequestError,
    UploadNotFoundError,
    UploadStateError,
    UploadTooLargeError,
)
from hark.filenames import about_file, clean_filename
from hark.jobs import feed, service
from hark.jobs.models import Job, Upload
from hark.jobs.queue import JobQueue
from hark.jobs.repository import UploadRepository
from hark.jobs.schemas import CreateUpload, JobOptions, JobOut
from hark.jobs.service import NewMedia
from hark.net.fetch import SOURCE_URL_FIELD, check_url
from hark.organisations.service import check_job_quotas
from hark.pipeline.media import MediaInfo, probe
from hark.principal import Principal
from hark.runtime import ServiceState
from hark.webhooks.dispatch import check_webhook_url

# A multipart body carries a little more than the file: its headers and the fields.
MULTIPART_OVERHEAD_BYTES = 1024 * 1024


@dataclass(frozen=True)
class CheckedOptions:
    options: JobOptions
    model: str


def check_options(data: dict[str, Any], state: ServiceState) -> CheckedOptions:
    """Options from form fields or JSON, checked; raises with the offending field named."""
    try:
        options = JobOptions.model_validate(data)
    except ValidationError as exc:
        raise invalid_fields(exc) from exc
    _, model = options.resolve(state.settings)
    if options.webhook_url is not None:
        check_webhook_url(options.webhook_url, state.settings)
    return CheckedOptions(options, model)


def invalid_fields(exc: ValidationError) -> RequestError:
    """Pydantic's findings as the API's 422: the first field named, every problem listed."""
    problems = [{"field": ".".join(str(p) for p in e["loc"]) or None, "message": e["msg"]}
                for e in exc.errors()]
    first = problems[0] if problems else {"field": None, "message": "invalid request"}
    message = f"{first['field']}: {first['message']}" if first["field"] else \
        str(first["message"])
    return RequestError(message, field=first["field"], errors=problems)


def submit_stored(
    session: Session, state: ServiceState, principal: Principal, *, job_id: str, key: str,
    filename: str, size: int, checked: CheckedOptions, field: str = "file",
) -> Job:
    """Probe media already stored under `key` and queue it as job `job_id`."""
    try:
        _check_priority(checked.options, principal)
        info = probe_stored(state, key, filename, field)
        media = NewMedia(key=key, filename=clean_filename(filename), size=size,
                         duration=round(info.duration, 3))
        return _create(session, state, principal, job_id, checked, media)
    except BaseException:
        state.storage.delete_prefix(key)
        raise


def submit_url(session: Session, state: ServiceState, principal: Principal, url: str,
               checked: CheckedOptions) -> Job:
    """Queue a job whose recording a worker will fetch from `url` (stage `fetching`).

    The URL's form is checked now (scheme, credentials, addresses written as numbers);
    where a host name leads is judged by the worker at every connection it makes.
    """
    _check_priority(checked.options, principal)
    check_url(url, field=SOURCE_URL_FIELD,
              allowed_networks=state.settings.fetch_allowed_networks)
    name = clean_filename(url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1],
                          default="download")
    return _create(session, state, principal, new_id(), checked,
                   NewMedia(key=None, filename=name, size=None, duration=None,
                            source_url=url))


def submit_upload(session: Session, state: ServiceState, principal: Principal,
                  upload_id: str, checked: CheckedOptions) -> Job:
    """Queue the recording of a filled upload slot."""
    upload = UploadRepository(session).get(principal.tenant_id, upload_id, lock=True)
    field = "source.upload_id"
    if upload is None:
        raise UploadNotFoundError(f"no upload with id {upload_id}", field=field)
    if upload.status == "pending" and state.storage.exists(upload.storage_key):
        # Filled through a presigned URL: the object store took the PUT, not us.
        upload.size = state.storage.size(upload.storage_key)
        upload.status = "ready"
        limit = state.settings.max_upload_bytes
        if (upload.size or 0) > limit:
            # Too big to keep: removed now, so the slot can never be used.
            state.storage.delete_prefix(upload.storage_key)
            raise UploadTooLargeError(f"the upload is larger than the {limit}-byte limit",
                                      field=field, limit=limit)
    if upload.status != "ready":
        raise UploadStateError(
            "the upload has no content yet" if upload.status == "pending"
            else "the upload was already used by a job", field=field, status=upload.status)
    if upload.expires_at < utcnow():
        raise UploadStateError("the upload expired", field=field)
    if not state.storage.exists(upload.storage_key):
        raise UploadStateError("the upload's content is missing", field=field)
    upload.status = "used"
    return submit_stored(session, state, principal, job_id=new_id(), key=upload.storage_key,
                         filename=upload.filename, size=upload.size or 0, checked=checked,
                         field=field)


def probe_stored(state: ServiceState, key: str, filename: str, field: str) -> MediaInfo:
    """Probe stored media; errors name the client's file and field, not server paths."""
    with state.storage.local_path(key) as path:
        try:
            return probe(path, max_seconds=state.settings.max_audio_seconds)
        except MediaError as exc:
            raise about_file(exc, path.name, filename, field=field) from exc


def _check_priority(options: JobOptions, principal: Principal) -> None:
    if options.priority > principal.max_priority:
        raise PriorityNotAllowedError(
            f"priority {options.priority} is above this key's maximum of "
            f"{principal.max_priority}", field="priority", limit=principal.max_priority)


def _create(session: Session, state: ServiceState, principal: Principal, job_id: str,
            checked: CheckedOptions, media: NewMedia) -> Job:
    check_job_quotas(session, principal.tenant_id, duration=media.duration, size=media.size)
    job = service.create_job(
        session, tenant_id=principal.tenant_id, api_key_id=principal.api_key_id,
        user_id=principal.user_id,
        options=checked.options, model=checked.model, media=media,
        max_queued=state.settings.max_queued_jobs, job_id=job_id)
    audit.record(session, request_actor(principal), tenant_id=principal.tenant_id,
                 action=JOB_CREATED, target_type="job", target_id=job.id,
                 details={"model": job.model,
                          "source": "url" if media.source_url else "upload"})
    announce_created(session, state.bus, state.queue, principal.tenant_id, job)
    if media.key is not None:
        key = media.key
        after_rollback(session, lambda: state.storage.delete_prefix(key))
    return job


def announce_created(session: Session, bus: Any, queue: JobQueue, tenant_id: str,
                     job: Job) -> None:
    """Once committed, the tenant's feed hears of the job and a worker is told of it;
    every submission route passes here."""
    shown = JobOut.of(job).model_dump(mode="json")
    job_id, queue_name, priority, duration = job.id, job.queue, job.priority, job.duration
    after_commit(session, lambda: feed.publish(bus, tenant_id, feed.CREATED, shown))
    after_commit(session, lambda: queue.enqueue(job_id, queue_name, priority, duration))


# --- upload slots -----------------------------------------------------------------------

def create_upload(session: Session, state: ServiceState, principal: Principal,
                  request: CreateUpload) -> tuple[Upload, str]:
    """A new slot and its one-use token (only the hash is stored)."""
    limit = state.settings.max_upload_bytes
    if request.size > limit:
        raise UploadTooLargeError(f"the upload is larger than the {limit}-byte limit",
                                  field="size", limit=limit)
    token = secrets.token_urlsafe(24)
    upload_id = new_id()
    upload = Upload(
        id=upload_id, tenant_id=principal.tenant_id, filename=clean_filename(request.filename),
        declared_size=request.size, token_hash=_digest(token),
        storage_key=f"uploads/{upload_id}/source", status="pending",
        expires_at=utcnow() + timedelta(seconds=state.settings.upload_url_seconds))
    UploadRepository(session).add(upload)
    return upload, token


def upload_for_put(session: Session, upload_id: str, token: str) -> Upload:
    upload = UploadRepository(session).get(None, upload_id)
    if upload is None or not hmac.compare_digest(upload.token_hash, _digest(token)):
        raise UploadNotFoundError(f"no upload with id {upload_id} for this token")
    if upload.status != "pending":
        raise UploadStateError("this upload already has its content", status=upload.status)
    if upload.expires_at < utcnow():
        raise UploadStateError("the upload URL expired")
    return upload


def mark_upload_filled(session: Session, state: ServiceState, upload_id: str,
                       size: int) -> None:
    stored = UploadRepository(session).get(None, upload_id, lock=True)
    if stored is None or stored.status != "pending":
        raise UploadStateError("the upload changed while it was being written")
    stored.status = "ready"
    stored.size = size


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
