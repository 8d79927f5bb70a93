"""The speakers API: enrol voices from uploaded recordings; list, read and remove profiles.

Uploaded samples stream into temporary storage objects (never held in memory), are
turned into embeddings in a worker thread (decoding and the voice encoder are CPU
work that would stall the event loop), and are deleted whatever happens: only the
embeddings are kept. One request is one transaction, so if any of its samples fails,
nothing is stored. Every lookup is scoped to the caller's tenant; another tenant's
profile id answers 404 like an unknown one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool

from hark.api.auth import CurrentPrincipal
from hark.api.multipart import UploadedFile, parse_form
from hark.api.openapi import ERRORS, multipart_body
from hark.api.state import ServiceState, get_state
from hark.audit.actor import Actor, request_actor
from hark.db.base import new_id
from hark.errors import RequestError, UploadTooLargeError
from hark.speakers import service
from hark.speakers.embedding import sample_from_upload
from hark.speakers.schemas import SpeakerList, SpeakerOut
from hark.speakers.service import MAX_NAME_LENGTH, MIN_SPEECH_SECONDS, NewSample
from hark.storage.base import ObjectWriter

router = APIRouter(prefix="/api/v1", tags=["speakers"], responses=ERRORS)
State = Annotated[ServiceState, Depends(get_state)]


# The enrolment routes parse their multipart bodies themselves, streaming the audio to
# storage, so FastAPI cannot infer the request body: these describe it for /docs.
_FILES = {
    "type": "array", "minItems": 1, "items": {"type": "string", "format": "binary"},
    "description": f"Recordings of this person alone, each with at least "
                   f"{MIN_SPEECH_SECONDS:g} s of speech (any format FFmpeg reads)."}
ENROLL_BODY = multipart_body(
    {"name": {"type": "string", "minLength": 1, "maxLength": MAX_NAME_LENGTH,
              "description": "The person's name; an existing name gains the new samples."},
     "files": _FILES},
    ["name", "files"])
SAMPLES_BODY = multipart_body({"files": _FILES}, ["files"])

FILES_FIELD = "files"
MAX_SAMPLES_PER_REQUEST = 20
TEMP_PREFIX = "speaker-samples"
# A multipart body carries a little more than its files: part headers and the name.
_MULTIPART_OVERHEAD_BYTES = 1024 * 1024


class _Budget:
    """The bytes all files of one request may take together (HARK_MAX_UPLOAD_BYTES).

    Without it, one request of MAX_SAMPLES_PER_REQUEST files could fill the disk with
    twenty times the upload limit before any of them is looked at.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def spend(self, count: int) -> None:
        self.used += count
        if self.used > self.limit:
            raise UploadTooLargeError(
                f"The voice samples are larger than the upload limit of {self.limit} bytes",
                field=FILES_FIELD, limit=self.limit)


class _BudgetedWriter:
    """An ObjectWriter that charges what it writes to the request's budget."""

    def __init__(self, key: str, inner: ObjectWriter, budget: _Budget) -> None:
        self.key = key
        self.size = 0
        self.committed = False
        self._inner = inner
        self._budget = budget

    def write(self, data: bytes) -> None:
        self._budget.spend(len(data))
        self._inner.write(data)
        self.size = self._inner.size

    def commit(self) -> None:
        self._inner.commit()
        self.committed = True

    def abort(self) -> None:
        self._inner.abort()

    def __enter__(self) -> _BudgetedWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if not self.committed:
            self.abort()


@dataclass(frozen=True)
class _Received:
    fields: dict[str, str]
    files: list[tuple[str, UploadedFile]]
    """(temporary storage key, the client's file) for each sample, in order."""


@asynccontextmanager
async def _receive_samples(
    request: Request, state: ServiceState, allowed_fields: frozenset[str],
) -> AsyncIterator[_Received]:
    """Stream a multipart body's audio files into temporary storage for the block."""
    limit = state.settings.max_upload_bytes
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > limit + _MULTIPART_OVERHEAD_BYTES:
        raise UploadTooLargeError(f"The upload is larger than the {limit}-byte limit",
                                  field=FILES_FIELD, limit=limit)
    prefix = f"{TEMP_PREFIX}/{new_id()}"
    budget = _Budget(limit)
    opened: list[_BudgetedWriter] = []

    def open_writer(_filename: str, _content_type: str | None) -> ObjectWriter:
        key = f"{prefix}/sample-{len(opened)}"
        writer = _BudgetedWriter(key, state.storage.writer(key), budget)
        opened.append(writer)
        return writer

    try:
        form = await parse_form(request.stream(), request.headers.get("content-type"),
                                open_writer, file_field=FILES_FIELD, max_file_bytes=limit,
                                max_files=MAX_SAMPLES_PER_REQUEST)
        for name in form.fields:
            if name not in allowed_fields:
                raise RequestError(f"Unknown form field {name!r}", field=name)
        if not form.files:
            raise RequestError(f"At least one audio file is required in the "
                               f"{FILES_FIELD!r} field", field=FILES_FIELD)
        # The parser drops a part with no file chosen (its writer aborted, never
        # committed); the committed writers are the files, in the same order.
        keys = [writer.key for writer in opened if writer.committed]
        assert len(keys) == len(form.files)
        yield _Received(fields={name: values[-1] for name, values in form.fields.items()},
                        files=list(zip(keys, form.files, strict=True)))
    finally:
        # Shielded: a client that goes away must not leave its audio behind.
        with anyio.CancelScope(shield=True):
            await run_in_threadpool(state.storage.delete_prefix, prefix)


def _embed(state: ServiceState, received: _Received) -> list[NewSample]:
    """Every sample's embedding; the first unusable file stops the request."""
    samples = []
    for key, upload in received.files:
        with state.storage.local_path(key) as path:
            samples.append(sample_from_upload(path, state.settings, filename=upload.filename,
                                              field=FILES_FIELD))
    return samples


def _enroll(state: ServiceState, actor: Actor, tenant_id: str, name: str,
            samples: list[NewSample]) -> tuple[SpeakerOut, bool]:
    with state.db.session(write=True) as session:
        profile = service.enroll(session, tenant_id, name, samples, actor=actor)
        # A new profile holds exactly these samples; a known name already had some.
        created = profile.sample_count == len(samples)
        return SpeakerOut.model_validate(profile), created


def _add_samples(state: ServiceState, actor: Actor, tenant_id: str, speaker_id: str,
                 samples: list[NewSample]) -> SpeakerOut:
    with state.db.session(write=True) as session:
        return SpeakerOut.model_validate(
            service.add_samples(session, tenant_id, speaker_id, samples, actor=actor))


@router.post(
    "/speakers", status_code=201, response_model=SpeakerOut, openapi_extra=ENROLL_BODY,
    summary="Enrol a voice from recordings (201 new profile; 200 when the name exists "
            "and gains the samples)",
    responses={200: {"model": SpeakerOut,
                     "description": "The name existed; its profile gained the samples"}})
async def enroll_speaker(request: Request, response: Response, principal: CurrentPrincipal,
                         state: State) -> SpeakerOut:
    async with _receive_samples(request, state, frozenset({"name"})) as received:
        raw_name = received.fields.get("name")
        if raw_name is None:
            raise RequestError("The 'name' field is required", field="name")
        name = service.validate_name(raw_name)  # before the costly part
        samples = await run_in_threadpool(_embed, state, received)
    profile, created = await run_in_threadpool(
        _enroll, state, request_actor(principal), principal.tenant_id, name, samples)
    if created:
        response.headers["Location"] = f"{router.prefix}/speakers/{profile.id}"
    else:
        response.status_code = 200
    return profile


@router.get("/speakers", response_model=SpeakerList,
            summary="The tenant's voice profiles, by name")
def list_speakers(principal: CurrentPrincipal, state: State) -> SpeakerList:
    with state.db.session() as session:
        profiles = service.list_profiles(session, principal.tenant_id)
        return SpeakerList(items=[SpeakerOut.model_validate(p) for p in profiles])


@router.get("/speakers/{speaker_id}", response_model=SpeakerOut, summary="A voice profile")
def get_speaker(speaker_id: str, principal: CurrentPrincipal, state: State) -> SpeakerOut:
    with state.db.session() as session:
        return SpeakerOut.model_validate(
            service.get_profile(session, principal.tenant_id, speaker_id))


@router.delete("/speakers/{speaker_id}", response_model=SpeakerOut,
               summary="Remove a voice profile and its samples; returns the removed "
                       "profile (200)")
def delete_speaker(speaker_id: str, principal: CurrentPrincipal, state: State) -> SpeakerOut:
    with state.db.session(write=True) as session:
        # By id only: the service also accepts a name, which a path named {id} must not.
        profile = service.get_profile(session, principal.tenant_id, speaker_id)
        removed = SpeakerOut.model_validate(profile)
        service.delete_profile(session, principal.tenant_id, profile.id,
                               actor=request_actor(principal))
    return removed


@router.post("/speakers/{speaker_id}/samples", response_model=SpeakerOut,
             openapi_extra=SAMPLES_BODY,
             summary="Add voice samples to a profile; returns the updated profile")
async def add_speaker_samples(speaker_id: str, request: Request, principal: CurrentPrincipal,
                              state: State) -> SpeakerOut:
    # Checked first, so an unknown id costs no upload and no embedding.
    await run_in_threadpool(get_speaker, speaker_id, principal, state)
    async with _receive_samples(request, state, frozenset()) as received:
        samples = await run_in_threadpool(_embed, state, received)
    return await run_in_threadpool(
        _add_samples, state, request_actor(principal), principal.tenant_id, speaker_id,
        samples)
