"""The organisation's people (`/api/v1/users`, admins): adding them, their roles,
disabling, reset links, and erasing a person with everything they submitted. Nobody
changes someone above them or gives a role above their own."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from hark.accounts import service, tokens
from hark.accounts.erasure import erase_person
from hark.accounts.models import User
from hark.accounts.policy import acting_role, outranks_or_equals
from hark.accounts.schemas import (
    ErasureOut,
    MemberChangeIn,
    MemberOut,
    NewMemberIn,
    ResetLinkOut,
    UserOut,
)
from hark.api.auth import CurrentPrincipal
from hark.api.openapi import ERRORS
from hark.api.state import Principal, State
from hark.audit.actor import request_actor
from hark.errors import ConflictError, NotFoundError, RoleNotAllowedError

router = APIRouter(prefix="/api/v1", tags=["accounts"], responses=ERRORS)


@router.get("/users", response_model=list[MemberOut], summary="The organisation's people")
def list_members(principal: CurrentPrincipal, state: State) -> list[MemberOut]:
    with state.db.session() as session:
        return [MemberOut(user=UserOut.of(user), role=role.split(":", 1)[1])
                for user, role in service.list_users(session, principal.tenant_id)]


@router.post("/users", response_model=MemberOut, status_code=201,
             summary="Add a person to the organisation")
def add_member(body: NewMemberIn, principal: CurrentPrincipal, state: State) -> MemberOut:
    _may_grant(principal, body.role)
    with state.db.session(write=True) as session:
        user = service.create_user(session, email=body.email, organisation=principal.tenant_id,
                                   actor=request_actor(principal),
                                   role=body.role, password=body.password, name=body.name)
        return MemberOut(user=UserOut.of(user), role=body.role)


@router.patch("/users/{user_id}", response_model=MemberOut,
              summary="Change a person's role, or disable them")
def change_member(user_id: str, body: MemberChangeIn, principal: CurrentPrincipal,
                  state: State) -> MemberOut:
    with state.db.session(write=True) as session:
        user, role = _member(session, principal, user_id)
        _may_grant(principal, role)  # nobody changes someone above them
        if body.role is not None:
            _may_grant(principal, body.role)
            role = service.set_role(session, user, principal.tenant_id, body.role,
                                    actor=request_actor(principal)).role
        if body.disabled:
            service.disable(session, user, actor=request_actor(principal))
        elif body.disabled is False:
            user.disabled_at = None
        return MemberOut(user=UserOut.of(user), role=role)


@router.delete("/users/{user_id}", response_model=ErasureOut,
               summary="Erase a person and everything they submitted")
def erase_member(user_id: str, principal: CurrentPrincipal, state: State) -> ErasureOut:
    """Their jobs (recordings, results, edits, search index), the voice profiles they
    enrolled, their keys and sign-ins, and the account go; audit events stop naming
    them. Someone who also belongs to another organisation is erased by an operator
    (`hark users erase`), not by one organisation's admin."""
    with state.db.session() as session:
        user, role = _member(session, principal, user_id)
        _may_grant(principal, role)
        if user.id == principal.user_id:
            raise ConflictError("you cannot erase yourself here", field="user_id")
        if len(service.memberships(session, user.id)) > 1:
            raise ConflictError("this person also belongs to another organisation",
                                field="user_id")
    report = erase_person(state.db, state.storage, user.id, actor=request_actor(principal))
    # Their keys and tokens stop at once here; other replicas' caches forget them soon.
    for digest, cached in list(state.keys.items()):
        if cached.user_id == user.id:
            state.keys.pop(digest, None)
    return ErasureOut(**report.to_dict())


@router.post("/users/{user_id}/reset-link", response_model=ResetLinkOut, status_code=201,
             summary="A one-time link for a person to set a new password")
def reset_link(user_id: str, principal: CurrentPrincipal, state: State,
               request: Request) -> ResetLinkOut:
    with state.db.session(write=True) as session:
        user, role = _member(session, principal, user_id)
        _may_grant(principal, role)
        raw = tokens.make_reset_link(session, user)
    base = state.settings.public_url or str(request.base_url)
    return ResetLinkOut(token=raw, url=f"{base.rstrip('/')}/#/reset/{raw}",
                        expires_in=tokens.RESET_SECONDS)


def _may_grant(principal: Principal, role: str) -> None:
    service.check_role(role)
    mine = acting_role(principal)
    if not outranks_or_equals(mine, role):
        raise RoleNotAllowedError(f"a {mine} cannot give or change the {role} role",
                                  role=mine, needed=role)


def _member(session: Any, principal: Principal, user_id: str) -> tuple[User, str]:
    found = [(u, r.split(":", 1)[1]) for u, r in service.list_users(session, principal.tenant_id)
             if u.id == user_id]
    if not found:
        raise NotFoundError("no such person in your organisation", user=user_id[:36])
    return found[0]
