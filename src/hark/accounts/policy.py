"""Who may do what: the role a signed-in user needs for each request, decided in one
place for every route (authentication calls it), so a new route cannot skip it.

    viewer   reads: jobs, results, transcripts, speakers, search, usage, events
    member   also creates: jobs, uploads, speakers, live streams; and changes the jobs
             they submitted (cancel, delete, retry, transcript edits)
    admin    also changes anyone's jobs, and manages the organisation's people
    owner    everything, and the only role that can make owners

API keys are held to their scopes instead (and a key made for a person, to that
person's role as well):

    jobs:read       every reading request and event stream
    jobs:write      submitting, changing and deleting jobs, uploads, transcript edits,
                    the OpenAI transcription API
    speakers:write  enrolling, changing and deleting voice profiles
    live            live streams (Hark's socket and OpenAI Realtime)
    admin           the organisation's people, keys, audit log and retention
"""

from __future__ import annotations

from hark.accounts.models import ROLES
from hark.errors import OptionError, RoleNotAllowedError, ScopeNotAllowedError
from hark.principal import Principal

RANK = {role: rank for rank, role in enumerate(ROLES)}  # 0 is the most allowed
READING = frozenset({"GET", "HEAD", "OPTIONS"})
# Sockets that start work (a live stream runs the recogniser): members and up.
WORKING_SOCKETS = ("/api/v1/live", "/v1/realtime")
ADMIN_PATHS = ("/api/v1/users", "/api/v1/keys", "/api/v1/audit",
               "/api/v1/organisation/retention")
OWN_ACCOUNT_PATHS = ("/api/v1/auth/",)
SPEAKER_PATHS = ("/api/v1/speakers",)

SCOPES = ("jobs:read", "jobs:write", "speakers:write", "live", "admin")
# What a key could do before keys had scopes, and what a new key gets unless told.
DEFAULT_SCOPES = frozenset({"jobs:read", "jobs:write", "speakers:write", "live"})


def parse_scopes(text: str | list[str] | None) -> frozenset[str]:
    """Scopes from "jobs:read,live" (commas or spaces) or a list; DEFAULT_SCOPES for none."""
    words = text.replace(",", " ").split() if isinstance(text, str) else list(text or [])
    if not words:
        return DEFAULT_SCOPES
    unknown = sorted(set(words) - set(SCOPES))
    if unknown:
        raise OptionError(f"unknown scope {unknown[0][:40]!r}; the scopes are "
                          f"{', '.join(SCOPES)}", field="scopes")
    return frozenset(words)


def needed_scope(method: str, path: str) -> str | None:
    """The scope a key needs for this request; None for a person's own account."""
    if path.startswith(OWN_ACCOUNT_PATHS):
        return None
    if path.startswith(ADMIN_PATHS):
        return "admin"
    if method == "WEBSOCKET":
        return "live" if path.startswith(WORKING_SOCKETS) else "jobs:read"
    if method in READING:
        return "jobs:read"
    if path.startswith(SPEAKER_PATHS) or (path.startswith("/api/v1/jobs/")
                                          and path.endswith("/enroll")):
        return "speakers:write"
    return "jobs:write"


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
    if principal.scopes is not None:
        scope = needed_scope(method, path)
        if scope is not None and scope not in principal.scopes:
            raise ScopeNotAllowedError(f"this API key lacks the {scope} scope this needs",
                                       needed=scope)
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


def acting_role(principal: Principal) -> str:
    """The role a caller acts with when giving roles or keys: a person's own; an
    organisation's key acts as an admin; the anonymous local user owns the server."""
    return principal.role or ("owner" if principal.api_key_id is None else "admin")
