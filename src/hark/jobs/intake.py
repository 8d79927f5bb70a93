"""Getting a recording into storage and into a job: multipart upload, source URL, or a
previously filled upload slot. Whatever the route, the media is probed before a job
is queued, and nothing stays in storage when the request fails.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from hark.api.multipart import parse_form
from hark.api.state import Principal, ServiceState
from hark.db.base import new_id, utcnow
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
from hark.jobs.repository import UploadRepository
from hark.jobs.schemas import CreateUpload, JobOptions
from hark.jobs.service import NewMedia
from hark.jobs.views import job_dict
from hark.net.fetch import fetch
from hark.pipeline.media import MediaInfo, probe
from hark.webhooks.dispatch import check_webhook_url

# A multipart body carries a little more than the file: its headers and the fields.
MULTIPART_OVERHEAD_BYTES = 1024 * 1024


def media_key(job_id: str) -> str:
    return f"media/{job_id}/source"


@dataclass(frozen=True)
class Submission:
    job: Job
    created: bool = True


def validate_options(data: dict[str, Any], state: ServiceState) -> tuple[JobOptions, str]:
    """Options from form fields or JSON, checked; raises with the offending field named."""
    try:
        options = JobOptions.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from exc
    _, model = options.resolve(state.settings)
    if options.webhook_url is not None:
        check_webhook_url(options.webhook_url, state.settings)
    return options, model


async def receive_multipart(
    state: ServiceState, chunks: AsyncIterator[bytes], content_type: str | None,
    content_length: int | None, job_id: str,
) -> tuple[dict[str, Any], str, int]:
    """Stream a multipart body's file into storage; returns (fields, filename, size)."""
    limit = state.settings.max_upload_bytes
    if content_length is not None and content_length > limit + MULTIPART_OVERHEAD_BYTES:
        raise UploadTooLargeError(f"the upload is larger than the {limit}-byte limit",
                                  field="file", limit=limit)
    key = media_key(job_id)
    form = await parse_form(chunks, content_type, lambda _name, _type: state.storage.writer(key),
                            max_file_bytes=limit)
    if form.file is None:
        raise RequestError("a 'file' part with the recording is required", field="file")
    fields = {name: values[-1] for name, values in form.fields.items()}
    return fields, form.file.filename, form.file.size


def finish_submission(
    state: ServiceState, principal: Principal, *, job_id: str, key: str, filename: str,
    size: int, fields: dict[str, Any] | None = None,
    checked: tuple[JobOptions, str] | None = None, source_url: str | None = None,
    cleanup: Callable[[], None] | None = None, field: str = "file",
) -> Job:
    """Validate, probe and queue stored media as job `job_id`; on failure remove it."""
    try:
        options, model = checked or validate_options(fields or {}, state)
        if options.priority > principal.max_priority:
            raise PriorityNotAllowedError(
                f"priority {options.priority} is above this key's maximum of "
                f"{principal.max_priority}", field="priority", limit=principal.max_priority)
        info = probe_stored(state, key, filename, field)
        media = NewMedia(key=key, filename=clean_filename(filename), size=size,
                         duration=round(info.duration, 3), source_url=source_url)
        with state.db.session(write=True) as session:
            job = service.create_job(
                session, tenant_id=principal.tenant_id, api_key_id=principal.api_key_id,
                options=options, model=model, media=media,
                max_queued=state.settings.max_queued_jobs, job_id=job_id)
    except BaseException:
        (cleanup or (lambda: state.storage.delete_prefix(key)))()
        raise
    # Committed: every submission route passes here, so the tenant's feed hears of all.
    feed.publish(state.bus, principal.tenant_id, feed.CREATED, job_dict(job))
    state.queue.enqueue(job.id, job.queue, job.priority, job.duration)
    return job


def probe_stored(state: ServiceState, key: str, filename: str, field: str) -> MediaInfo:
    """Probe stored media; errors name the client's file and field, not server paths."""
    with state.storage.local_path(key) as path:
        try:
            return probe(path, max_seconds=state.settings.max_audio_seconds)
        except MediaError as exc:
            raise about_file(exc, path.name, filename, field=field) from exc


def submit_url(state: ServiceState, principal: Principal, url: str,
               fields: dict[str, Any]) -> Job:
    checked = validate_options(fields, state)  # before any download
    job_id = new_id()
    key = media_key(job_id)
    settings = state.settings
    with state.storage.writer(key) as writer:
        result = fetch(url, writer, max_bytes=settings.max_upload_bytes,
                       timeout=settings.fetch_timeout_seconds,
                       allowed_networks=settings.fetch_allowed_networks)
        writer.commit()
    return finish_submission(state, principal, job_id=job_id, key=key,
                             filename=result.filename, size=result.size, checked=checked,
                             source_url=url, field="source.url")


def submit_upload(state: ServiceState, principal: Principal, upload_id: str,
                  fields: dict[str, Any]) -> Job:
    checked = validate_options(fields, state)
    with state.db.session(write=True) as session:
        upload = UploadRepository(session).get(principal.tenant_id, upload_id, lock=True)
        if upload is None:
            raise UploadNotFoundError(f"no upload with id {upload_id}", field="source.upload_id")
        if upload.status == "pending" and state.storage.exists(upload.storage_key):
            # Filled through a presigned URL: the object store took the PUT, not us.
            upload.size = state.storage.size(upload.storage_key)
            upload.status = "ready"
            limit = state.settings.max_upload_bytes
            if (upload.size or 0) > limit:
                state.storage.delete_prefix(upload.storage_key)
                upload.status = "used"
                raise UploadTooLargeError(f"the upload is larger than the {limit}-byte limit",
                                          field="source.upload_id", limit=limit)
        if upload.status != "ready":
            raise UploadStateError(
                "the upload has no content yet" if upload.status == "pending"
                else "the upload was already used by a job", field="source.upload_id",
                status=upload.status)
        if upload.expires_at < utcnow():
            raise UploadStateError("the upload expired", field="source.upload_id")
        upload.status = "used"
        key, filename, size = upload.storage_key, upload.filename, upload.size or 0
    if not state.storage.exists(key):
        raise UploadStateError("the upload's content is missing", field="source.upload_id")
    return finish_submission(state, principal, job_id=new_id(), key=key, filename=filename,
                             size=size, checked=checked, field="source.upload_id")


# --- upload slots -----------------------------------------------------------------------

def create_upload(state: ServiceState, principal: Principal,
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
    with state.db.session(write=True) as session:
        UploadRepository(session).add(upload)
    return upload, token


def open_upload_for_put(state: ServiceState, upload_id: str, token: str) -> Upload:
    with state.db.session() as session:
        upload = UploadRepository(session).get(None, upload_id)
    if upload is None or not hmac.compare_digest(upload.token_hash, _digest(token)):
        raise UploadNotFoundError(f"no upload with id {upload_id} for this token")
    if upload.status != "pending":
        raise UploadStateError("this upload already has its content", status=upload.status)
    if upload.expires_at < utcnow():
        raise UploadStateError("the upload URL expired")
    return upload


async def receive_put(state: ServiceState, upload: Upload, chunks: AsyncIterator[bytes]) -> int:
    """Stream a PUT body into the slot's object; exactly the declared size is accepted."""
    declared = upload.declared_size
    with state.storage.writer(upload.storage_key) as writer:
        async for chunk in chunks:
            if writer.size + len(chunk) > declared:
                raise UploadTooLargeError(
                    f"the body is larger than the declared size of {declared} bytes",
                    field="body", limit=declared)
            writer.write(chunk)
        if writer.size != declared:
            raise RequestError(f"the body has {writer.size} bytes; {declared} were declared",
                               field="body")
        writer.commit()
    with state.db.session(write=True) as session:
        stored = UploadRepository(session).get(None, upload.id, lock=True)
        if stored is None or stored.status != "pending":
            state.storage.delete_prefix(upload.storage_key)
            raise UploadStateError("the upload changed while it was being written")
        stored.status = "ready"
        stored.size = declared
    return declared


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()




