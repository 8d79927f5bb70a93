"""Who may do what: the role a signed-in user needs for each request, decided in one
place for every route (authentication calls it), so a new route cannot skip it.

    viewer   reads: jobs, results, transcripts, speakers, search, usage, events
    member   also creates: jobs, uploads, speakers, live streams; and changes the jobs
             they submitted (cancel, delete, retry, transcript edits)
    admin    also changes anyone's jobs, and manages the organisation's people
    owner    everything, and the only role that can make owners

API keys are not people: a key keeps the whole of its tenant's access, as before
accounts existed (scopes per key are a later step).
"""

from __future__ import annotations

from hark.accounts.models import ROLES
from hark.errors import RoleNotAllowedError
from hark.principal import Principal

RANK = {role: rank for rank, role in enumerate(ROLES)}  # 0 is the most allowed
READING = frozenset({"GET", "HEAD", "OPTIONS"})
# Sockets that start work (a live stream runs the recogniser): members and up.
WORKING_SOCKETS = ("/api/v1/live", "/v1/realtime")
ADMIN_PATHS = ("/api/v1/users",)
OWN_ACCOUNT_PATHS = ("/api/v1/auth/",)


def needed_role(method: str, path: str) -> str:
    """The least role that may make this request (`method` WEBSOCKET for sockets)."""
    if path.startswith(OWN_ACCOUNT_PATHS):
        return "viewer"
    if path.startswith(ADMIN_PATHS):
        return "admin"
    if method == "WEBSOCKET":
        return "member" if path.startswith(WORKING_SOCKETS) else "viewer"
    return "viewer" if method in READING else "member"


def check(principal: Principal, method: str, path: str) -> None:
    if principal.role is None:
        return
    needed = needed_role(method, path)
    if RANK.get(principal.role, len(ROLES)) > RANK[needed]:
        raise RoleNotAllowedError(
            f"this needs the {needed} role or higher in the organisation; yours is "
            f"{principal.role}", role=principal.role, needed=needed)


def check_manages(principal: Principal, submitted_by: str | None) -> None:
    """A member changes (cancels, deletes, retries, edits) only the jobs they submitted;
    admins and owners, any of the organisation's."""
    if principal.role == "member" and submitted_by != principal.user_id:
        raise RoleNotAllowedError("a member changes only the jobs they submitted; this one "
                                  "needs the admin role", role="member", needed="admin")


def outranks_or_equals(role: str, other: str) -> bool:
    return RANK[role] <= RANK[other]
