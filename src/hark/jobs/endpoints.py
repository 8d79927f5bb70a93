"""The job API: submit, list, read, fetch results, retry, cancel and purge.

Handlers parse the request, call the job services with the request's session (which
commits when the handler returns) and answer through the job's one API shape, `JobOut`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from hark.api.auth import CurrentPrincipal, require_principal
from hark.api.multipart import parse_form
from hark.api.openapi import ERRORS, form_fields, multipart_body
from hark.api.state import ReadSession, ServiceState, State, WriteSession
from hark.audit import service as audit
from hark.audit.actor import request_actor
from hark.audit.models import RESULT_DOWNLOADED
from hark.db.base import new_id
from hark.errors import (
    JobPurgedError,
    JobStateError,
    RequestError,
    UploadTooLargeError,
)
from hark.jobs import intake, lifecycle, service
from hark.jobs.keys import media_key
from hark.jobs.models import COMPLETED, Job, Status
from hark.jobs.schemas import (
    CreateJob,
    CreateUpload,
    JobOptions,
    JobOut,
    JobPage,
    UploadSlot,
    UrlSource,
)
from hark.pipeline.transcript import Transcript
from hark.pipeline.writers import MEDIA_TYPES, Format, render
from hark.storage.base import Storage
from hark.transcripts import service as revisions

router = APIRouter(prefix="/api/v1", tags=["jobs"], responses=ERRORS)


def job_response(job: Job | JobOut, status_code: int = 200,
                 headers: dict[str, str] | None = None) -> Response:
    out = job if isinstance(job, JobOut) else JobOut.of(job)
    return Response(out.json_bytes(), status_code=status_code, headers=headers,
                    media_type="application/json")


# The upload route streams its multipart body to storage itself; this describes it.
UPLOAD_BODY = multipart_body(
    {"file": {"type": "string", "format": "binary",
              "description": "The recording: any audio or video file FFmpeg reads."},
     **form_fields(JobOptions, exclude={"known_speakers"})},
    ["file"])


@router.post("/jobs/upload", status_code=202, response_model=JobOut,
             summary="Submit a recording as multipart form data", openapi_extra=UPLOAD_BODY)
async def upload_job(request: Request, principal: CurrentPrincipal, state: State,
                     session: WriteSession) -> Response:
    job_id = new_id()
    key = media_key(job_id)
    fields, filename, size = await receive_multipart(
        state, request.stream(), request.headers.get("content-type"),
        request.headers.get("content-length"), key)
    try:
        checked = intake.check_options(fields, state)
    except BaseException:
        state.storage.delete_prefix(key)
        raise
    job = await run_in_threadpool(intake.submit_stored, session, state, principal,
                                  job_id=job_id, key=key, filename=filename, size=size,
                                  checked=checked)
    return job_response(job, 202)


async def receive_multipart(state: ServiceState, chunks: AsyncIterator[bytes],
                            content_type: str | None, content_length: str | None,
                            key: str) -> tuple[dict[str, Any], str, int]:
    """Stream a multipart body's file into storage; returns (fields, filename, size)."""
    limit = state.settings.max_upload_bytes
    length = int(content_length) if content_length and content_length.isdigit() else None
    if length is not None and length > limit + intake.MULTIPART_OVERHEAD_BYTES:
        raise UploadTooLargeError(f"the upload is larger than the {limit}-byte limit",
                                  field="file", limit=limit)
    form = await parse_form(chunks, content_type, lambda _name, _type: state.storage.writer(key),
                            max_file_bytes=limit)
    if form.file is None:
        raise RequestError("a 'file' part with the recording is required", field="file")
    fields = {name: values[-1] for name, values in form.fields.items()}
    return fields, form.file.filename, form.file.size


@router.post("/jobs", status_code=202, response_model=JobOut,
             summary="Submit a recording by URL or by a filled upload slot")
def create_job(body: CreateJob, principal: CurrentPrincipal, state: State,
               session: WriteSession) -> Response:
    checked = intake.check_options(body.model_dump(exclude_unset=True, exclude={"source"}),
                                   state)
    if isinstance(body.source, UrlSource):
        job = intake.submit_url(session, state, principal, body.source.url, checked)
    else:
        job = intake.submit_upload(session, state, principal, body.source.upload_id, checked)
    return job_response(job, 202)


@router.post("/uploads", status_code=201, response_model=UploadSlot,
             summary="Reserve an upload slot; PUT the file to the returned URL")
def create_upload(body: CreateUpload, principal: CurrentPrincipal, state: State,
                  session: WriteSession, request: Request) -> UploadSlot:
    upload, token = intake.create_upload(session, state, principal, body)
    # Scaled mode: the client sends the file straight to the object store.
    url = state.storage.presigned_put(upload.storage_key, size=upload.declared_size,
                                      expires_seconds=state.settings.upload_url_seconds)
    if url is None:
        base = state.settings.public_url or str(request.base_url)
        url = base.rstrip("/") + f"/api/v1/uploads/{upload.id}?token={token}"
    return UploadSlot(upload_id=upload.id, url=url, expires_at=upload.expires_at)


@router.put("/uploads/{upload_id}", summary="Upload the file of a slot (the URL carries the token)")
async def put_upload(upload_id: str, request: Request, state: State, session: WriteSession,
                     token: Annotated[str, Query(max_length=128)]) -> dict[str, Any]:
    upload = await run_in_threadpool(intake.upload_for_put, session, upload_id, token)
    declared, key = upload.declared_size, upload.storage_key
    # The slot's row is read; the transaction ends before the body streams in, so no
    # database lock is held while a client sends it.
    await run_in_threadpool(session.commit)
    await receive_put(state.storage, key, declared, request.stream())
    try:
        await run_in_threadpool(intake.mark_upload_filled, session, state, upload_id, declared)
    except BaseException:
        state.storage.delete_prefix(key)
        raise
    return {"upload_id": upload_id, "size": declared, "status": "ready"}


async def receive_put(storage: Storage, key: str, declared: int,
                      chunks: AsyncIterator[bytes]) -> None:
    """Stream a PUT body into the slot's object; exactly the declared size is accepted."""
    with storage.writer(key) as writer:
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


@router.get("/jobs", response_model=JobPage, summary="List jobs, newest first")
def list_jobs(
    principal: CurrentPrincipal, session: ReadSession,
    status: Annotated[Status | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> Response:
    jobs, next_cursor = service.list_jobs(session, principal.tenant_id, status=status,
                                          limit=limit, cursor=cursor)
    page = JobPage(items=[JobOut.of(job) for job in jobs], next_cursor=next_cursor)
    return Response(page.model_dump_json(), media_type="application/json")


@router.get("/jobs/{job_id}", response_model=JobOut, summary="A job's status")
async def get_job(job_id: str, request: Request) -> Response:
    # The hottest endpoint (clients poll it): one indexed read of the job's row. The
    # principal and state are fetched here rather than declared as dependencies, whose
    # resolution costs as much again as the read.
    principal = await require_principal(request)
    state: ServiceState = request.app.state.hark
    assert state.job_reader is not None
    return job_response(await state.job_reader.read(principal.tenant_id, job_id))


@router.get("/jobs/{job_id}/result", summary="The transcript, in one of the formats",
            response_class=Response)
def get_result(job_id: str, principal: CurrentPrincipal, state: State, session: ReadSession,
               format: Annotated[Format, Query()] = "json") -> Response:
    job = service.get_job(session, principal.tenant_id, job_id)
    if job.status != COMPLETED:
        raise JobStateError(f"the job is {job.status}; a result exists once it is completed",
                            status=job.status)
    if job.result_key is None:
        raise JobPurgedError("the job's results were deleted (purged) and cannot be "
                             "fetched again", status=job.status)
    raw = state.storage.get_bytes(job.result_key)
    stem = job.filename.rsplit(".", 1)[0] or "transcript"
    # The latest revision: edited words and renamed speakers, the original timings.
    edited = revisions.latest_edited(state.db, job_id, raw)
    if format == "json" and edited is None:
        body = raw
    else:
        transcript = edited or Transcript.from_dict(_loads(raw))
        body = render(transcript, format, name=stem).encode()
    # Recorded once the result is in hand (a failed read is no download), in a write
    # transaction of its own: the reads above took no write lock.
    with state.db.session(write=True) as audit_session:
        audit.record(audit_session, request_actor(principal), tenant_id=principal.tenant_id,
                     action=RESULT_DOWNLOADED, target_type="job", target_id=job.id,
                     details={"format": format})
    return Response(body, media_type=MEDIA_TYPES[format],
                    headers={"Content-Disposition": _disposition(f"{stem}.{format}")})


@router.post("/jobs/{job_id}/retry", status_code=202, response_model=JobOut,
             summary="Run a failed or canceled job again as a new job (same recording "
                     "and options)")
def retry_job(job_id: str, principal: CurrentPrincipal, state: State,
              session: WriteSession) -> Response:
    job = lifecycle.retry(session, state, principal, job_id)
    return job_response(job, 202, headers={"Location": f"{router.prefix}/jobs/{job.id}"})


@router.delete("/jobs/{job_id}", response_model=JobOut,
               summary="Cancel a job; with purge=true also delete its audio and results")
def delete_job(job_id: str, principal: CurrentPrincipal, state: State, session: WriteSession,
               purge: bool = False) -> Response:
    return job_response(lifecycle.cancel(session, state, principal, job_id, purge=purge))


def _loads(raw: bytes) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(raw)
    return data


def _disposition(filename: str) -> str:
    ascii_name = filename.encode("ascii", "replace").decode().replace('"', "'")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename)}"
