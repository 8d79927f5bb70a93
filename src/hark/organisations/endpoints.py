"""`GET /api/v1/usage`: what the caller's organisation uses, beside its quotas;
`GET /api/v1/organisation`: its quotas and retention; `PATCH
/api/v1/organisation/retention`: its admins change the retention. Quotas are the
server operators' to set (`hark orgs quota`): an organisation does not lift its own."""

from __future__ import annotations

from fastapi import APIRouter, Request

from hark.api.auth import CurrentPrincipal
from hark.api.openapi import ERRORS
from hark.api.rate_limit import RateDecision
from hark.api.state import ReadSession, State, WriteSession
from hark.audit.actor import request_actor
from hark.organisations import service
from hark.organisations.models import Organisation
from hark.organisations.schemas import (
    Measure,
    OrganisationOut,
    RateOut,
    RetentionIn,
    UsageOut,
)

router = APIRouter(prefix="/api/v1", tags=["organisations"], responses=ERRORS)


@router.get("/usage", response_model=UsageOut, summary="Your organisation's usage and quotas")
def get_usage(principal: CurrentPrincipal, session: ReadSession, state: State,
              request: Request) -> UsageOut:
    used = service.usage(session, principal.tenant_id)
    slots = getattr(request.app.state, "live_slots", None)
    live_limit = used.quotas["live_streams"]
    per_tenant = state.settings.live_max_streams_per_tenant
    window = getattr(request.state, "rate_limit", None)
    rate = principal.rate_limit or state.settings.rate_limit or None
    return UsageOut(
        organisation=used.organisation, period_start=used.period_start,
        audio_seconds=Measure(used=round(used.audio_seconds, 3),
                              limit=used.quotas["audio_seconds_per_month"]),
        concurrent_jobs=Measure(used=used.concurrent_jobs,
                                limit=used.quotas["concurrent_jobs"]),
        storage_bytes=Measure(used=used.storage_bytes, limit=used.quotas["storage_bytes"]),
        live_streams=Measure(used=slots.active[principal.tenant_id] if slots else 0,
                             limit=per_tenant if live_limit is None
                             else min(live_limit, per_tenant)),
        requests=RateOut(rate=None if window is None else rate,
                         remaining=window.remaining if isinstance(window, RateDecision)
                         else None,
                         reset=int(window.reset) if isinstance(window, RateDecision)
                         else None))


@router.get("/organisation", response_model=OrganisationOut,
            summary="Your organisation: its quotas and retention")
def get_organisation(principal: CurrentPrincipal, session: ReadSession) -> OrganisationOut:
    organisation = session.get(Organisation, principal.tenant_id)
    # A tenant nothing was set for yet has no row: no quota, everything kept.
    return OrganisationOut.of(organisation or Organisation(id=principal.tenant_id,
                                                           name=principal.tenant_id))


@router.patch("/organisation/retention", response_model=OrganisationOut,
              summary="Change how long recordings and results are kept (admins)")
def change_retention(body: RetentionIn, principal: CurrentPrincipal,
                     session: WriteSession) -> OrganisationOut:
    given = body.model_fields_set
    changed = service.set_retention(
        session, service.ensure_organisation(session, principal.tenant_id).id,
        media_days=body.media_days if "media_days" in given else False,
        results_days=body.results_days if "results_days" in given else False,
        actor=request_actor(principal))
    return OrganisationOut.of(changed)

