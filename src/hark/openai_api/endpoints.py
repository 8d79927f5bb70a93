"""OpenAI's audio API on Hark's job service: `/v1/audio/transcriptions`,
`/v1/audio/translations` and `/v1/models`.

A request becomes a job through the same intake as `POST /api/v1/jobs/upload` (the
file streamed to storage, probed, queued), so the queue limit, priorities, worker
limits and metrics all apply; the handler then waits for the job and answers in the
requested format, or streams Server-Sent Events as the job produces segments. A client
that disconnects while waiting cancels its job.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from sse_starlette import ServerSentEvent

from hark.api.auth import CurrentPrincipal
from hark.api.multipart import UploadedFile, parse_form
from hark.api.openapi import OPENAI_ERRORS
from hark.api.sse import event_source, unnamed
from hark.api.state import Principal, ServiceState, get_state
from hark.db.base import new_id
from hark.errors import HarkError, RequestError, UploadTooLargeError
from hark.events.base import TERMINAL_EVENTS
from hark.jobs import intake
from hark.jobs.keys import media_key
from hark.jobs.schemas import MAX_KNOWN_SPEAKERS
from hark.openai_api import formats, models
from hark.openai_api.errors import hark_error_parts
from hark.openai_api.schemas import AudioRequest, Task, parse_request, resolve
from hark.openai_api.speakers import MAX_REFERENCE_FIELD_BYTES, known_speakers
from hark.openai_api.waiting import ClientGone, JobWatch
from hark.storage.base import ObjectWriter

log = logging.getLogger("hark.openai")

router = APIRouter(prefix="/v1", tags=["OpenAI-compatible"], responses=OPENAI_ERRORS)
State = Annotated[ServiceState, Depends(get_state)]

MAX_FIELDS = 64
# Room in a body for the fields beside the file, reference clips included.
FIELDS_ALLOWANCE = intake.MULTIPART_OVERHEAD_BYTES + MAX_KNOWN_SPEAKERS * \
    MAX_REFERENCE_FIELD_BYTES
# An SSE comment this often keeps proxies from closing a stream whose job waits.
# The status logged for a request whose client left before the answer (nginx's).
CLIENT_CLOSED = 499

_FORM = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file", "model"],
    "properties": {"file": {"type": "string", "format": "binary"},
                   "model": {"type": "string"},
                   "response_format": {"type": "string"}}}}}}}


@router.post("/audio/transcriptions", summary="Transcribe audio (OpenAI-compatible)",
             openapi_extra=_FORM, response_class=Response)
async def create_transcription(request: Request, principal: CurrentPrincipal,
                               state: State) -> Response:
    return await _handle(request, principal, state, "transcribe")


@router.post("/audio/translations", summary="Translate audio into English (OpenAI-compatible)",
             openapi_extra=_FORM, response_class=Response)
async def create_translation(request: Request, principal: CurrentPrincipal,
                             state: State) -> Response:
    return await _handle(request, principal, state, "translate")


@router.get("/models", summary="Models the audio endpoints accept (OpenAI-compatible)")
def list_models(principal: CurrentPrincipal, state: State) -> dict[str, Any]:
    return models.list_models(state.settings, state.started_at)


@router.get("/models/{model_id:path}", summary="One model (OpenAI-compatible)")
def get_model(model_id: str, principal: CurrentPrincipal, state: State) -> dict[str, Any]:
    return models.get_model(model_id, state.settings, state.started_at)


def _submit(state: ServiceState, principal: Principal, job_id: str, key: str,
            upload: UploadedFile, checked: intake.CheckedOptions) -> None:
    # This request outlives its job's submission (it waits for the result): the
    # submission is its own unit of work, committed before the wait begins.
    with state.db.session(write=True) as session:
        intake.submit_stored(session, state, principal, job_id=job_id, key=key,
                             filename=upload.filename, size=upload.size, checked=checked)


async def _handle(request: Request, principal: Principal, state: ServiceState,
                  task: Task) -> Response:
    job_id = new_id()
    key = media_key(job_id)
    fields, upload = await _receive(state, request, key)
    try:
        audio = parse_request(fields, task)
        options = audio.job_options()
        model = await run_in_threadpool(resolve, audio, options, state.settings)
        if audio.known_speakers:
            known = await run_in_threadpool(known_speakers, audio.known_speakers,
                                            state.settings)
            options = audio.job_options(known)
    except BaseException:
        state.storage.delete_prefix(key)
        raise
    # Subscribed before the job exists: not one of its events can be missed.
    subscription = state.bus.subscribe(job_id)
    try:
        await run_in_threadpool(_submit, state, principal, job_id, key, upload,
                                intake.CheckedOptions(options, model))
    except BaseException:
        subscription.close()
        raise
    log.info("openai %s request: job %s, model %s (asked for %s), format %s%s", task, job_id,
             model, audio.model or "default", audio.response_format,
             ", streamed" if audio.stream else "")
    watch = JobWatch(state, principal, job_id, request, subscription)
    if audio.stream:
        return event_source(_stream(watch, audio))
    try:
        transcript = await watch.result()
    except ClientGone:
        log.info("openai request: the client left; job %s canceled", job_id)
        return Response(status_code=CLIENT_CLOSED)
    finally:
        subscription.close()
    return formats.response(transcript, audio)


async def _receive(state: ServiceState, request: Request,
                   key: str) -> tuple[dict[str, list[str]], UploadedFile]:
    """Stream the body's file into storage under `key`; returns every field's values."""
    limit = state.settings.max_upload_bytes
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > limit + FIELDS_ALLOWANCE:
        raise UploadTooLargeError(f"the upload is larger than the {limit}-byte limit",
                                  field="file", limit=limit)
    writers: list[ObjectWriter] = []

    def open_writer(_name: str, _type: str | None) -> ObjectWriter:
        writer = state.storage.writer(key)
        writers.append(writer)
        return writer

    form = await parse_form(_bounded(request.stream(), writers), request.headers.get(
        "content-type"), open_writer, max_file_bytes=limit,
        max_field_bytes=MAX_REFERENCE_FIELD_BYTES, max_fields=MAX_FIELDS)
    if form.file is None:
        raise RequestError("a 'file' part with the recording is required", field="file")
    return form.fields, form.file


async def _bounded(chunks: AsyncIterator[bytes],
                   writers: list[ObjectWriter]) -> AsyncIterator[bytes]:
    """The body, refused once what is not the file (fields held in memory, multipart
    framing) passes FIELDS_ALLOWANCE: a chunked body announces no length to check."""
    total = 0
    async for chunk in chunks:
        total += len(chunk)
        if total - sum(w.size for w in writers) > FIELDS_ALLOWANCE:
            raise UploadTooLargeError(
                f"the form fields are larger than {FIELDS_ALLOWANCE} bytes in all",
                field="body", limit=FIELDS_ALLOWANCE)
        yield chunk


async def _stream(watch: JobWatch, audio: AudioRequest) -> AsyncIterator[ServerSentEvent | None]:
    """transcript.text.delta per segment as the job makes them; at the end the diarized
    segments (diarized_json) and transcript.text.done."""
    first = True
    finished = False
    try:
        async for event in watch.events():
            if event is None:
                yield None
            elif event["type"] == "segment":
                delta = formats.delta_event(event.get("segment") or {}, first, audio)
                if delta is not None:
                    first = False
                    yield unnamed(delta)
            elif event["type"] in TERMINAL_EVENTS:
                finished = True
                try:
                    transcript = await watch.outcome(event)
                except HarkError as exc:
                    # The status line went out long ago: the error travels as an event,
                    # which the SDKs raise as an APIError.
                    yield unnamed(hark_error_parts(exc)[1])
                    return
                if audio.response_format == "diarized_json":
                    for segment in formats.segment_events(transcript):
                        yield unnamed(segment)
                yield unnamed(formats.done_event(transcript, audio))
                return
    except ClientGone:
        finished = True
    finally:
        if not finished:  # the client left mid-stream (this task was cancelled)
            await watch.cancel()
        watch.subscription.close()


