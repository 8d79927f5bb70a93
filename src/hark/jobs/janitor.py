"""Housekeeping the server does in the background: expired upload slots and the partial
files an interrupted upload leaves behind are removed, so storage holds only objects
that some job or live upload slot refers to.
"""

from __future__ import annotations

import logging

from hark.db import Database
from hark.db.base import utcnow
from hark.jobs.periodic import Periodic
from hark.jobs.repository import UploadRepository
from hark.storage.base import Storage

log = logging.getLogger("hark.janitor")

INTERVAL_SECONDS = 60.0
# An upload still being written renews nothing; an hour without completion is abandoned.
PARTIAL_MAX_AGE_SECONDS = 3600.0


def sweep(db: Database, storage: Storage) -> tuple[int, int]:
    """Remove expired unused uploads and stale partial files; returns both counts."""
    with db.session(write=True) as session:
        uploads = UploadRepository(session).expired(utcnow())
        keys = [u.storage_key for u in uploads]
        for upload in uploads:
            session.delete(upload)
    for key in keys:
        storage.delete_prefix(key)
    sweep_partials = getattr(storage, "sweep_partials", None)
    partials = int(sweep_partials(PARTIAL_MAX_AGE_SECONDS)) if sweep_partials else 0
    return len(keys), partials


def janitor(db: Database, storage: Storage) -> Periodic:
    def tick() -> None:
        uploads, partials = sweep(db, storage)
        if uploads or partials:
            log.info("removed %d expired uploads and %d partial files", uploads, partials)

    return Periodic("hark-janitor", INTERVAL_SECONDS, tick)
