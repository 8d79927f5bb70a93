"""Users and memberships: creating, finding, roles, disabling, passwords. Functions
take the session first and never commit."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from hark.accounts import passwords
from hark.accounts.models import ROLES, Membership, User
from hark.audit import service as audit_log
from hark.audit.actor import Actor
from hark.audit.models import USER_CREATED, USER_DISABLED, USER_ROLE_CHANGED
from hark.db.base import utcnow
from hark.errors import ConflictError, NotFoundError, OptionError
from hark.organisations.service import ensure_organisation

_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}$")


def normal_email(email: str) -> str:
    email = email.strip().lower()
    if not _EMAIL.match(email):
        raise OptionError("not an e-mail address", field="email")
    return email


def check_role(role: str) -> str:
    if role not in ROLES:
        raise OptionError(f"a role is one of {', '.join(ROLES)}", field="role")
    return role


def create_user(session: Session, *, email: str, organisation: str, role: str,
                password: str | None, actor: Actor, name: str | None = None) -> User:
    """A user with a membership; None for `password`: signs in only through SSO."""
    email = normal_email(email)
    check_role(role)
    if session.scalar(select(User).where(User.email == email)) is not None:
        raise ConflictError(f"a user with e-mail {email} exists", field="email")
    user = User(email=email, name=" ".join((name or email.split("@")[0]).split())[:200],
                password_hash=None if password is None else passwords.hash_password(password))
    session.add(user)
    session.flush()
    set_role(session, user, organisation, role)
    audit_log.record(session, actor, tenant_id=organisation, action=USER_CREATED,
                 target_type="user", target_id=user.id, details={"role": role})
    return user


def anyone(session: Session) -> bool:
    """Whether the server has any user yet."""
    return session.scalar(select(User.id).limit(1)) is not None


def lock_first_owner(session: Session) -> bool:
    """Hold the default organisation's row so that two first visitors cannot both make
    an owner; whether nobody exists yet."""
    from hark.db.base import DEFAULT_TENANT_ID
    from hark.organisations.models import Organisation

    ensure_organisation(session, DEFAULT_TENANT_ID)
    session.scalar(select(Organisation).where(Organisation.id == DEFAULT_TENANT_ID)
                   .with_for_update())
    return not anyone(session)


def user_by_email(session: Session, email: str) -> User | None:
    return session.scalar(select(User).where(User.email == email.strip().lower()))


def find_user(session: Session, email_or_id: str) -> User:
    user = session.get(User, email_or_id) or session.scalar(
        select(User).where(User.email == email_or_id.strip().lower()))
    if user is None:
        raise NotFoundError(f"no user {email_or_id!r}", user=email_or_id[:320])
    return user


def set_role(session: Session, user: User, organisation: str, role: str,
             actor: Actor | None = None) -> Membership:
    """Make `user` a member of `organisation` with `role` (or change the role); with an
    `actor`, a change is audited."""
    check_role(role)
    ensure_organisation(session, organisation)
    membership = session.get(Membership, (user.id, organisation))
    before = membership.role if membership else None
    if actor is not None and before != role:
        audit_log.record(session, actor, tenant_id=organisation, action=USER_ROLE_CHANGED,
                     target_type="user", target_id=user.id,
                     details={"from": before, "to": role})
    if membership is None:
        membership = Membership(user_id=user.id, organisation_id=organisation, role=role)
        session.add(membership)
    elif membership.role == "owner" and role != "owner" and _owners(session, organisation) < 2:
        raise ConflictError("an organisation keeps at least one owner", field="role")
    membership.role = role
    session.flush()
    return membership


def _owners(session: Session, organisation: str) -> int:
    return len(list(session.scalars(select(Membership).where(
        Membership.organisation_id == organisation, Membership.role == "owner"))))


def memberships(session: Session, user_id: str) -> list[Membership]:
    return list(session.scalars(select(Membership).where(Membership.user_id == user_id)
                                .order_by(Membership.organisation_id)))


def list_users(session: Session, organisation: str | None = None) -> list[tuple[User, str]]:
    """(user, role) pairs, of one organisation or every membership."""
    query = select(User, Membership.role, Membership.organisation_id).join(
        Membership, Membership.user_id == User.id).order_by(User.email)
    if organisation is not None:
        query = query.where(Membership.organisation_id == organisation)
    return [(user, f"{org}:{role}") for user, role, org in session.execute(query)]


def disable(session: Session, user: User, *, actor: Actor) -> None:
    """The user can no longer sign in; their sign-ins end."""
    from hark.accounts.tokens import revoke_all

    if user.disabled_at is None:
        for membership in memberships(session, user.id):
            audit_log.record(session, actor, tenant_id=membership.organisation_id,
                         action=USER_DISABLED, target_type="user", target_id=user.id)
    user.disabled_at = user.disabled_at or utcnow()
    revoke_all(session, user.id)
    session.flush()


def change_password(session: Session, user: User, new_password: str) -> None:
    user.password_hash = passwords.hash_password(new_password, "new_password")
    session.flush()
