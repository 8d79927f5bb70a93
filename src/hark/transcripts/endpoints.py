"""The transcript API: revisions, the recording for the player, search, and enrolling a
speaker's voice from a job. Every lookup is scoped to the caller's tenant: another
tenant's job answers 404 like an unknown one."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from hark.api.auth import CurrentPrincipal, presented_key, resolve_principal
from hark.api.state import Principal, ServiceState, get_state
from hark.errors import JobStateError
from hark.jobs import service as jobs
from hark.speakers.schemas import SpeakerOut
from hark.transcripts import search as index
from hark.transcripts import service
from hark.transcripts.enroll import enroll_speaker
from hark.transcripts.media import media_response
from hark.transcripts.schemas import EnrollRequest, RestoreRequest, TranscriptEdit

router = APIRouter(prefix="/api/v1", tags=["transcripts"])
State = Annotated[ServiceState, Depends(get_state)]


async def media_principal(request: Request) -> Principal:
    """Browsers cannot send headers with `<audio src>`: `?api_key=` also works here."""
    return await resolve_principal(request, presented_key(request)
                                   or request.query_params.get("api_key"))


def _answer(current: service.Current, changed: bool | None = None) -> JSONResponse:
    body: dict[str, Any] = current.to_dict()
    if changed is not None:
        body["changed"] = changed
    return JSONResponse(body)


@router.get("/jobs/{job_id}/transcript",
            summary="The transcript's latest revision (or ?revision=N), with edits applied")
def get_transcript(job_id: str, principal: CurrentPrincipal, state: State,
                   revision: Annotated[int | None, Query(ge=0)] = None) -> Response:
    with state.db.session() as session:
        current = service.read(session, state.storage, principal.tenant_id, job_id, revision)
    return _answer(current)


@router.put("/jobs/{job_id}/transcript",
            summary="Save edited words, segment text and speaker names as a new revision")
def put_transcript(job_id: str, body: TranscriptEdit, principal: CurrentPrincipal,
                   state: State) -> Response:
    with state.db.session(write=True) as session:
        current, changed = service.save(
            session, state.storage, principal, job_id,
            segments=[s.change() for s in body.segments], speakers=body.speakers,
            base_revision=body.base_revision)
    return _answer(current, changed)


@router.get("/jobs/{job_id}/transcript/revisions",
            summary="The transcript's revisions, oldest first (0 is the original)")
def list_revisions(job_id: str, principal: CurrentPrincipal, state: State) -> Response:
    with state.db.session() as session:
        items = service.revisions(session, principal.tenant_id, job_id)
    return JSONResponse({"items": items})


@router.post("/jobs/{job_id}/transcript/restore",
             summary="Restore a revision (default: the original) as a new revision")
def restore_transcript(job_id: str, principal: CurrentPrincipal, state: State,
                       body: RestoreRequest | None = None) -> Response:
    request = body or RestoreRequest()
    with state.db.session(write=True) as session:
        current, changed = service.restore(session, state.storage, principal, job_id,
                                           revision=request.revision,
                                           base_revision=request.base_revision)
    return _answer(current, changed)


@router.post("/jobs/{job_id}/speakers/{speaker_id}/enroll",
             summary="Save a transcript speaker's voice as an enrolled profile and name "
                     "the speaker after it")
async def enroll_from_job(job_id: str, speaker_id: str, body: EnrollRequest,
                          principal: CurrentPrincipal, state: State) -> Response:
    # Decoding and the voice encoder are CPU work: off the event loop.
    profile, current = await run_in_threadpool(enroll_speaker, state, principal, job_id,
                                               speaker_id, body.name)
    speaker = SpeakerOut.model_validate(profile).model_dump(mode="json")
    return JSONResponse({"speaker": speaker, "transcript": current.to_dict()})


@router.get("/jobs/{job_id}/media", response_class=Response,
            summary="The job's recording, with byte ranges (206) for seeking players")
def get_media(job_id: str, request: Request, state: State,
              principal: Annotated[Principal, Depends(media_principal)]) -> Response:
    with state.db.session() as session:
        job = jobs.get_job(session, principal.tenant_id, job_id)
        key, filename = job.media_key, job.filename
    if key is None:
        raise JobStateError("the job's recording was purged", status="purged")
    return media_response(request, state.storage, key, filename)


@router.get("/search", summary="Full-text search across the tenant's transcripts")
def search_transcripts(
    principal: CurrentPrincipal, state: State,
    q: Annotated[str, Query(min_length=1, max_length=500)],
    limit: Annotated[int, Query(ge=1, le=index.MAX_LIMIT)] = 20,
) -> Response:
    index.query_words(q)  # a query with no words is refused before any indexing
    index.catch_up(state.db, state.storage, principal.tenant_id)
    with state.db.session() as session:
        hits = index.search(session, principal.tenant_id, q, limit)
    return JSONResponse({"query": q, "items": [hit.to_dict() for hit in hits]})
