"""Side effects that must wait for a commit: publishing an event, sending a queue
message, deleting stored files.

A service registers them on the session it was given (`after_commit(session, action)`);
they run once that session's transaction commits, in order, and are dropped if it
rolls back. So a worker never receives a message for a job it cannot yet read, a
subscriber never hears of a change that did not happen, and a file is never deleted
for a deletion that was undone. `after_rollback` is the other way round: undoing what
the transaction would have owned (a stored upload whose job was never committed). A
failing action is logged; the commit has happened and the others still run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import event
from sqlalchemy.orm import Session

log = logging.getLogger("hark.db")

_ON_COMMIT = "hark_after_commit"
_ON_ROLLBACK = "hark_after_rollback"


def after_commit(session: Session, action: Callable[[], object]) -> None:
    session.info.setdefault(_ON_COMMIT, []).append(action)


def after_rollback(session: Session, action: Callable[[], object]) -> None:
    session.info.setdefault(_ON_ROLLBACK, []).append(action)


def _run(actions: list[Callable[[], object]], when: str) -> None:
    for action in actions:
        try:
            action()
        except Exception:
            log.exception("an action after a %s failed", when)


@event.listens_for(Session, "after_commit")
def _committed(session: Session) -> None:
    session.info.pop(_ON_ROLLBACK, None)
    _run(session.info.pop(_ON_COMMIT, []), "commit")


@event.listens_for(Session, "after_rollback")
def _rolled_back(session: Session) -> None:
    session.info.pop(_ON_COMMIT, None)
    _run(session.info.pop(_ON_ROLLBACK, []), "rollback")
