"""Open event streams end within seconds of their key being revoked, or of their
sign-in being ended.

A stream is authenticated once, when it opens, and may then stay open for hours. So
the credentials of open streams are checked against the database again every
`RECHECK_SECONDS`: a key must still be live (and a person's key, its person not
disabled); a signed-in person's sign-in must not have been ended (signed out,
revoked, its refresh token reused) nor the person disabled. One query per kind per
process for all of them, made only while a stream is open. The database is what every
process shares (`hark keys revoke` writes it from a process of its own; API replicas
share it in scaled mode), so a revocation reaches the streams of every process within
that interval, and keys, people and sign-ins deleted outright count as revoked.

A stream watches its credential with `key_watch(connection).watch(principal)`, whose
event is set once it is found revoked, and ends itself: Server-Sent Events with a last
`error` event, a WebSocket with close code 4401 (`run_until_revoked` does the racing).
Credentials found revoked are also remembered, so that this process stops taking them
from its short-lived credential cache at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

from fastapi.concurrency import run_in_threadpool
from sqlalchemy import select
from starlette.requests import HTTPConnection

from hark.accounts.models import RefreshToken, User
from hark.api.state import Principal, ServiceState
from hark.db import Database
from hark.keys.models import ApiKey

log = logging.getLogger("hark.api")

RECHECK_SECONDS = 2.0
_QUERY_CHUNK = 500
_MAX_REMEMBERED = 10_000


def credential(principal: Principal) -> str | None:
    """What a caller's access rests on: "key:<id>", "session:<id>:<user id>", or None
    for the anonymous local user (nothing to revoke)."""
    if principal.api_key_id is not None:
        return f"key:{principal.api_key_id}"
    if principal.session_id is not None and principal.user_id is not None:
        return f"session:{principal.session_id}:{principal.user_id}"
    return None


class KeyWatch:
    """The credentials of this process's open streams, and the events that end them."""

    def __init__(self, db: Database, interval: float = RECHECK_SECONDS) -> None:
        self.db = db
        self.interval = interval
        self.revoked_ids: set[str] = set()
        # Touched only on the event loop: no lock.
        self._holders: dict[str, set[asyncio.Event]] = {}
        self._task: asyncio.Task[None] | None = None

    @contextmanager
    def watch(self, principal: Principal) -> Iterator[asyncio.Event]:
        """An event set when `principal`'s key or sign-in is revoked, while inside the
        block. Anonymous callers have nothing to revoke: their event is never set."""
        revoked = asyncio.Event()
        key_id = credential(principal)
        if key_id is None:
            yield revoked
            return
        if key_id in self.revoked_ids:
            revoked.set()
        self._holders.setdefault(key_id, set()).add(revoked)
        self._ensure_checking()
        try:
            yield revoked
        finally:
            holders = self._holders.get(key_id)
            if holders is not None:
                holders.discard(revoked)
                if not holders:
                    del self._holders[key_id]

    def _ensure_checking(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._check_periodically())

    async def _check_periodically(self) -> None:
        while self._holders:
            await asyncio.sleep(self.interval)
            watched = list(self._holders)
            if not watched:
                return
            try:
                live = await run_in_threadpool(self._live_ids, watched)
            except Exception:
                # A database outage must not end every stream: check again next time.
                log.warning("could not re-check the keys of open streams", exc_info=True)
                continue
            for key_id in watched:
                if key_id not in live:
                    self._remember(key_id)
                    for revoked in self._holders.get(key_id, ()):
                        revoked.set()

    def is_revoked(self, principal: Principal) -> bool:
        return credential(principal) in self.revoked_ids

    def _live_ids(self, credentials: list[str]) -> set[str]:
        keys = [c.split(":", 1)[1] for c in credentials if c.startswith("key:")]
        sessions = [c.split(":")[1:] for c in credentials if c.startswith("session:")]
        live: set[str] = set()
        with self.db.session() as session:
            for chunk in _chunks(keys):
                live.update(f"key:{key_id}" for key_id in session.scalars(
                    select(ApiKey.id).outerjoin(User, User.id == ApiKey.user_id).where(
                        ApiKey.id.in_(chunk), ApiKey.revoked_at.is_(None),
                        User.disabled_at.is_(None))))
            for chunk in _chunks([family for family, _ in sessions]):
                ended = set(session.scalars(select(RefreshToken.family_id).where(
                    RefreshToken.family_id.in_(chunk), RefreshToken.revoked_at.is_not(None))))
                enabled = set(session.scalars(select(User.id).where(
                    User.id.in_({user for family, user in sessions if family in chunk}),
                    User.disabled_at.is_(None))))
                live.update(f"session:{family}:{user}" for family, user in sessions
                            if family in chunk and family not in ended and user in enabled)
        return live

    def _remember(self, key_id: str) -> None:
        if len(self.revoked_ids) >= _MAX_REMEMBERED:
            self.revoked_ids.clear()
        self.revoked_ids.add(key_id)


def _chunks(ids: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(ids), _QUERY_CHUNK):
        yield ids[start:start + _QUERY_CHUNK]


def key_watch(connection: HTTPConnection) -> KeyWatch:
    """The app's watch, made on first use (and again for a restarted app's database)."""
    app_state = connection.app.state
    state: ServiceState = app_state.hark
    watch: KeyWatch | None = getattr(app_state, "key_watch", None)
    if watch is None or watch.db is not state.db:
        watch = app_state.key_watch = KeyWatch(state.db)
    return watch


async def run_until_revoked(revoked: asyncio.Event,
                            work: Callable[[], Awaitable[None]]) -> bool:
    """Run `work` to its end (False), or cancel it once `revoked` is set (True).

    The work runs as a task of its own so that its exceptions reach the caller as they
    are (a task group would wrap them in an ExceptionGroup)."""
    work_task = asyncio.ensure_future(work())
    revocation = asyncio.ensure_future(revoked.wait())
    try:
        await asyncio.wait({work_task, revocation}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:  # the caller itself is stopped: stop both
        work_task.cancel()
        revocation.cancel()
        await asyncio.gather(work_task, revocation, return_exceptions=True)
        raise
    revocation.cancel()
    if work_task.done():
        work_task.result()  # its exception, if it raised one
        return False
    work_task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await work_task
    return True
