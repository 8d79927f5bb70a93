"""`/api/v1/keys`: the organisation's API keys, for its admins (or a key with the
admin scope). Nobody hands out more than they hold: a key made by a key gets no scope
and no priority its maker lacks, and a key made for a person needs a maker whose role
is at least that person's."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy.orm import Session

from hark.accounts.models import Membership
from hark.accounts.policy import acting_role, outranks_or_equals, parse_scopes
from hark.api.auth import CurrentPrincipal
from hark.api.openapi import ERRORS
from hark.api.state import Principal, ReadSession, State, WriteSession
from hark.audit.actor import request_actor
from hark.errors import NotFoundError, PermissionDeniedError, ScopeNotAllowedError
from hark.keys import service
from hark.keys.models import ApiKey
from hark.keys.schemas import CreatedKeyOut, KeyOut, NewKeyIn

router = APIRouter(prefix="/api/v1", tags=["keys"], responses=ERRORS)


@router.get("/keys", response_model=list[KeyOut], summary="The organisation's API keys")
def list_keys(principal: CurrentPrincipal, session: ReadSession,
              revoked: Annotated[bool, Query(description="Include revoked keys.")] = False
              ) -> list[KeyOut]:
    return [KeyOut.of(key) for key in service.list_keys(
        session, include_revoked=revoked, tenant_id=principal.tenant_id)]


@router.post("/keys", response_model=CreatedKeyOut, status_code=201,
             summary="Make an API key (shown once)")
def create_key(body: NewKeyIn, principal: CurrentPrincipal,
               session: WriteSession) -> CreatedKeyOut:
    scopes = parse_scopes(body.scopes)
    if principal.scopes is not None and not scopes <= principal.scopes:
        missing = sorted(scopes - principal.scopes)[0]
        raise ScopeNotAllowedError(f"a key cannot give the {missing} scope it lacks",
                                   needed=missing)
    if body.max_priority > principal.max_priority:
        raise PermissionDeniedError(f"you may give keys a maximum priority up to "
                                    f"{principal.max_priority}", field="max_priority")
    if body.user_id is not None and body.user_id != principal.user_id:
        _may_act_for(session, principal, body.user_id)
    created = service.create_key(
        session, name=body.name, tenant_id=principal.tenant_id,
        actor=request_actor(principal), max_priority=body.max_priority,
        rate_limit=body.rate_limit, scopes=sorted(scopes), user_id=body.user_id)
    return CreatedKeyOut(**KeyOut.of(created.key).model_dump(), key=created.secret,
                         webhook_secret=created.key.webhook_secret)


@router.delete("/keys/{key_id}", response_model=KeyOut, summary="Revoke an API key")
def revoke_key(key_id: str, principal: CurrentPrincipal, session: WriteSession,
               state: State) -> KeyOut:
    key = session.get(ApiKey, key_id[:36])
    if key is None or key.tenant_id != principal.tenant_id:
        raise NotFoundError("no such key in your organisation", key=key_id[:36])
    revoked = KeyOut.of(service.revoke_key(session, key.id, actor=request_actor(principal)))
    state.keys.pop(key.key_hash, None)  # other replicas forget it within their cache's TTL
    return revoked


def _may_act_for(session: Session, principal: Principal, user_id: str) -> None:
    membership = session.get(Membership, (user_id, principal.tenant_id))
    if membership is None:
        raise NotFoundError("no such person in your organisation", user=user_id[:36])
    if not outranks_or_equals(acting_role(principal), membership.role):
        raise PermissionDeniedError(f"a key for a {membership.role} needs a {membership.role}"
                                    " or higher to make it", field="user_id")
