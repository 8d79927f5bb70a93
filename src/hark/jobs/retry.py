"""Retry a failed or canceled job: a new job from the same stored recording and options.

The recording is copied under the new job's own key rather than shared, so purging
either job never takes the other's media with it. The old job stays as it was (its
error is history); the answer is the new job, queued like any submission (202).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse

from hark.api.auth import CurrentPrincipal
from hark.api.state import Principal, ServiceState, get_state
from hark.db.base import new_id
from hark.errors import JobStateError
from hark.jobs import intake, service
from hark.jobs.models import CANCELED, FAILED, Job
from hark.jobs.schemas import JobOut
from hark.jobs.views import job_dict

router = APIRouter(prefix="/api/v1", tags=["jobs"])
State = Annotated[ServiceState, Depends(get_state)]

RETRYABLE = (FAILED, CANCELED)
COPY_CHUNK_BYTES = 1024 * 1024


def retry_job(state: ServiceState, principal: Principal, job_id: str) -> Job:
    with state.db.session() as session:
        job = service.get_job(session, principal.tenant_id, job_id)
        if job.status not in RETRYABLE:
            raise JobStateError(f"only a failed or canceled job can be retried; this one is "
                                f"{job.status}", status=job.status)
        if job.media_key is None:
            raise JobStateError("the job's recording was purged; submit it again",
                                status=job.status)
        fields: dict[str, Any] = dict(job.options)
        if job.webhook_url:
            fields["webhook_url"] = job.webhook_url
        source_key, filename, source_url = job.media_key, job.filename, job.source_url
    checked = intake.validate_options(fields, state)
    retry_id = new_id()
    key = intake.media_key(retry_id)
    with state.storage.local_path(source_key) as path, open(path, "rb") as source, \
            state.storage.writer(key) as writer:
        while chunk := source.read(COPY_CHUNK_BYTES):
            writer.write(chunk)
        writer.commit()
        size = writer.size
    return intake.finish_submission(state, principal, job_id=retry_id, key=key,
                                    filename=filename, size=size, checked=checked,
                                    source_url=source_url)


@router.post("/jobs/{job_id}/retry", status_code=202, response_model=JobOut,
             summary="Run a failed or canceled job again as a new job (same recording "
                     "and options)")
def retry(job_id: str, principal: CurrentPrincipal, state: State) -> Response:
    job = retry_job(state, principal, job_id)
    return JSONResponse(job_dict(job), status_code=202,
                        headers={"Location": f"{router.prefix}/jobs/{job.id}"})
