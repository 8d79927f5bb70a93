"""The job API: submit, list, read, fetch results, cancel and purge."""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from hark.api.auth import CurrentPrincipal, require_principal
from hark.api.state import ServiceState, get_state
from hark.db.base import new_id
from hark.errors import JobPurgedError, JobStateError, OptionError
from hark.jobs import feed, intake, service
from hark.jobs.models import COMPLETED, STATUSES
from hark.jobs.runner import results_prefix
from hark.jobs.schemas import CreateJob, CreateUpload, JobOut, JobPage, UploadSlot, UrlSource
from hark.jobs.views import job_dict
from hark.pipeline.transcript import Transcript
from hark.pipeline.writers import FORMATS, MEDIA_TYPES, render
from hark.transcripts import service as revisions

router = APIRouter(prefix="/api/v1", tags=["jobs"])
State = Annotated[ServiceState, Depends(get_state)]


def _job_response(job: Any, status_code: int = 200) -> JSONResponse:
    return JSONResponse(job_dict(job), status_code=status_code)


@router.post("/jobs/upload", status_code=202, response_model=JobOut,
             summary="Submit a recording as multipart form data")
async def upload_job(request: Request, principal: CurrentPrincipal, state: State) -> Response:
    job_id = new_id()
    length = request.headers.get("content-length")
    fields, filename, size = await intake.receive_multipart(
        state, request.stream(), request.headers.get("content-type"),
        int(length) if length and length.isdigit() else None, job_id)
    job = await run_in_threadpool(
        intake.finish_submission, state, principal, job_id=job_id,
        key=intake.media_key(job_id), filename=filename, size=size, fields=fields)
    return _job_response(job, 202)


@router.post("/jobs", status_code=202, response_model=JobOut,
             summary="Submit a recording by URL or by a filled upload slot")
def create_job(body: CreateJob, principal: CurrentPrincipal, state: State) -> Response:
    fields = body.model_dump(exclude_unset=True, exclude={"source"})
    if isinstance(body.source, UrlSource):
        job = intake.submit_url(state, principal, body.source.url, fields)
    else:
        job = intake.submit_upload(state, principal, body.source.upload_id, fields)
    return _job_response(job, 202)


@router.post("/uploads", status_code=201, response_model=UploadSlot,
             summary="Reserve an upload slot; PUT the file to the returned URL")
def create_upload(body: CreateUpload, principal: CurrentPrincipal, state: State,
                  request: Request) -> UploadSlot:
    upload, token = intake.create_upload(state, principal, body)
    # Scaled mode: the client sends the file straight to the object store.
    url = state.storage.presigned_put(upload.storage_key, size=upload.declared_size,
                                      expires_seconds=state.settings.upload_url_seconds)
    if url is None:
        base = state.settings.public_url or str(request.base_url)
        url = base.rstrip("/") + f"/api/v1/uploads/{upload.id}?token={token}"
    return UploadSlot(upload_id=upload.id, url=url, expires_at=upload.expires_at)


@router.put("/uploads/{upload_id}", summary="Upload the file of a slot (the URL carries the token)")
async def put_upload(upload_id: str, request: Request, state: State,
                     token: Annotated[str, Query(max_length=128)]) -> dict[str, Any]:
    upload = await run_in_threadpool(intake.open_upload_for_put, state, upload_id, token)
    size = await intake.receive_put(state, upload, request.stream())
    return {"upload_id": upload.id, "size": size, "status": "ready"}


@router.get("/jobs", response_model=JobPage, summary="List jobs, newest first")
def list_jobs(
    principal: CurrentPrincipal, state: State,
    status: Annotated[str | None, Query(max_length=16)] = None,
    limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> Response:
    if status is not None and status not in STATUSES:
        raise OptionError(f"status must be one of {', '.join(STATUSES)}", field="status")
    with state.db.session() as session:
        jobs, next_cursor = service.list_jobs(session, principal.tenant_id, status=status,
                                              limit=limit, cursor=cursor)
        items = [job_dict(job) for job in jobs]
    return JSONResponse({"items": items, "next_cursor": next_cursor})


@router.get("/jobs/{job_id}", response_model=JobOut, summary="A job's status")
async def get_job(job_id: str, request: Request) -> Response:
    # The hottest endpoint (clients poll it): one indexed read without the ORM, and on
    # SQLite, whose WAL readers never wait for writers, on the loop's own connection.
    # The principal and state are fetched here rather than declared as dependencies,
    # whose resolution costs as much again as the read.
    principal = await require_principal(request)
    state: ServiceState = request.app.state.hark
    if state.job_reader is not None:
        return _job_response(service.visible_job(state.job_reader.read(job_id),
                                                 principal.tenant_id, job_id))
    return _job_response(
        await run_in_threadpool(service.read_job, state.db, principal.tenant_id, job_id))


@router.get("/jobs/{job_id}/result", summary="The transcript, in one of the formats",
            response_class=Response)
def get_result(job_id: str, principal: CurrentPrincipal, state: State,
               format: Annotated[str, Query(max_length=8)] = "json") -> Response:
    if format not in FORMATS:
        raise OptionError(f"format must be one of {', '.join(FORMATS)}", field="format")
    with state.db.session() as session:
        job = service.get_job(session, principal.tenant_id, job_id)
        status, result_key, filename = job.status, job.result_key, job.filename
    if status != COMPLETED:
        raise JobStateError(f"the job is {status}; a result exists once it is completed",
                            status=status)
    if result_key is None:
        raise JobPurgedError("the job's results were deleted (purged) and cannot be "
                             "fetched again", status=status)
    raw = state.storage.get_bytes(result_key)
    stem = filename.rsplit(".", 1)[0] or "transcript"
    # The latest revision: edited words and renamed speakers, the original timings.
    edited = revisions.latest_edited(state.db, job_id, raw)
    if format == "json" and edited is None:
        body = raw
    else:
        transcript = edited or Transcript.from_dict(_loads(raw))
        body = render(transcript, format, name=stem).encode()
    return Response(body, media_type=MEDIA_TYPES[format],
                    headers={"Content-Disposition": _disposition(f"{stem}.{format}")})


@router.delete("/jobs/{job_id}", response_model=JobOut,
               summary="Cancel a job; with purge=true also delete its audio and results")
def delete_job(job_id: str, principal: CurrentPrincipal, state: State,
               purge: bool = False) -> Response:
    with state.db.session(write=True) as session:
        job, changed = service.cancel_job(session, principal.tenant_id, job_id)
        keys = [k for k in (job.media_key, results_prefix(job.id)) if k] if purge else []
        if purge:
            service.mark_purged(job)
            revisions.forget(session, job.id)  # edits and search index: text of the recording
        body = job_dict(job)
    if changed:
        state.bus.publish(job_id, {"type": "canceled", "job_id": job_id, "status": "canceled"})
    if purge:
        feed.publish(state.bus, principal.tenant_id, feed.PURGED, body)
    for key in keys:
        state.storage.delete_prefix(key)
    return JSONResponse(body)


def _loads(raw: bytes) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(raw)
    return data


def _disposition(filename: str) -> str:
    ascii_name = filename.encode("ascii", "replace").decode().replace('"', "'")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename)}"
