"""The transcript API: revisions, the recording for the player, search, and enrolling a
speaker's voice from a job. Every lookup is scoped to the caller's tenant: another
tenant's job answers 404 like an unknown one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from hark.api.auth import CurrentPrincipal, presented_key, resolve_principal
from hark.api.openapi import ERRORS
from hark.api.state import ServiceState, get_state
from hark.audit import service as audit
from hark.audit.actor import Actor, link_actor, request_actor
from hark.audit.models import MEDIA_DOWNLOADED, RESULT_DOWNLOADED
from hark.errors import AuthenticationError, JobPurgedError
from hark.jobs import service as jobs
from hark.speakers.schemas import SpeakerOut
from hark.transcripts import search as index
from hark.transcripts import service
from hark.transcripts.enroll import enroll_speaker
from hark.transcripts.media import media_response
from hark.transcripts.media_links import MediaGrant, check_grant, media_links
from hark.transcripts.schemas import EnrollRequest, RestoreRequest, TranscriptEdit

router = APIRouter(prefix="/api/v1", tags=["transcripts"], responses=ERRORS)
State = Annotated[ServiceState, Depends(get_state)]


@dataclass(frozen=True)
class MediaAccess:
    """Who reads a recording: a caller with a key in a header, or a signed link."""

    tenant_id: str
    link: MediaGrant | None
    actor: Actor


async def media_access(
    request: Request, job_id: str,
    token: Annotated[str | None, Query(max_length=1024,
                                       description="a signed link's token")] = None,
) -> MediaAccess:
    if "api_key" in request.query_params:
        raise AuthenticationError(
            "API keys are not accepted in URLs: send the key in a header, or ask "
            f"GET /api/v1/jobs/{job_id}/media/link for a signed link", field="api_key")
    if token is not None:
        grant = media_links(request.app.state.hark.settings).verify(token, job_id)
        return MediaAccess(tenant_id=grant.tenant_id, link=grant,
                           actor=link_actor(grant.api_key_id))
    principal = await resolve_principal(request, presented_key(request))
    return MediaAccess(tenant_id=principal.tenant_id, link=None,
                       actor=request_actor(principal))


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
    with state.db.session(write=True) as session:
        audit.record(session, request_actor(principal), tenant_id=principal.tenant_id,
                     action=RESULT_DOWNLOADED, target_type="job", target_id=job_id,
                     details={"format": "transcript", "revision": current.revision})
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
            summary="The job's recording, with byte ranges (206) for seeking players; "
                    "a key in a header, or a signed link's token")
def get_media(job_id: str, request: Request, state: State,
              access: Annotated[MediaAccess, Depends(media_access)]) -> Response:
    with state.db.session() as session:
        if access.link is not None:
            check_grant(session, access.link, anonymous=state.anonymous)
        job = jobs.get_job(session, access.tenant_id, job_id)
        key, filename = job.media_key, job.filename
    if key is None:
        raise JobPurgedError("the job's recording was deleted (purged)", status="purged")
    response = media_response(request, state.storage, key, filename)
    if _starts_a_download(response):
        with state.db.session(write=True) as session:
            audit.record(session, access.actor, tenant_id=access.tenant_id,
                         action=MEDIA_DOWNLOADED, target_type="job", target_id=job_id)
    return response


def _starts_a_download(response: Response) -> bool:
    """A player reads a recording in many ranged requests as it plays and seeks; only
    the whole file, or a range from its first byte, counts as a download, so that
    playing a recording once is one audit event rather than dozens."""
    if response.status_code == 200:
        return True
    return response.status_code == 206 and \
        response.headers.get("content-range", "").startswith("bytes 0-")


@router.get("/jobs/{job_id}/media/link",
            summary="A signed, expiring link to the recording, for players that cannot "
                    "send a key (`<audio src>`)")
def get_media_link(job_id: str, request: Request, principal: CurrentPrincipal,
                   state: State) -> Response:
    with state.db.session() as session:
        job = jobs.get_job(session, principal.tenant_id, job_id)
        purged = job.media_key is None
    if purged:
        raise JobPurgedError("the job's recording was deleted (purged)", status="purged")
    links = media_links(state.settings)
    token = links.sign(MediaGrant(job_id=job_id, tenant_id=principal.tenant_id,
                                  api_key_id=principal.api_key_id))
    base = state.settings.public_url or str(request.base_url)
    url = base.rstrip("/") + f"/api/v1/jobs/{quote(job_id, safe='')}/media?token={token}"
    expires_at = datetime.now(UTC) + timedelta(seconds=links.max_age)
    return JSONResponse({"url": url, "expires_at": expires_at.isoformat().replace(
        "+00:00", "Z")})


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
