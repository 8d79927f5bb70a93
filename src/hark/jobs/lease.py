"""A running job's watch: its lease heartbeat, its progress writes, and when to stop.

A heartbeat thread renews the lease every third of its length. Progress is written at
most every PROGRESS_WRITE_SECONDS; every write, like every renewal, is fenced on the
claim, so a write that matches no row means the job was canceled or taken over, and
the pipeline's cancel hook stops it at its next chunk. No separate polling is needed.
A job also stops past its time limit (a stuck decoder), and when its worker stops.
"""

from __future__ import annotations

import logging
import threading
import time

from hark.errors import DatabaseError, HarkError, JobTimeoutError
from hark.jobs import events, service
from hark.jobs.context import WorkerContext
from hark.jobs.service import Claim
from hark.pipeline.transcript import Segment

log = logging.getLogger("hark.worker")

PROGRESS_WRITE_SECONDS = 0.5


class ShutdownRequested(Exception):
    """The worker is stopping; its running job goes back to the queue."""


class Watch:
    def __init__(self, ctx: WorkerContext, claim: Claim, time_limit: float) -> None:
        self.ctx = ctx
        self.claim = claim
        self.lost = threading.Event()
        self.done = threading.Event()
        self.deadline = time.monotonic() + time_limit
        self.time_limit = time_limit
        self._thread = threading.Thread(target=self._beat, name="hark-job-lease", daemon=True)
        self._last_write = 0.0
        self._last_stage: str | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.done.set()
        self._thread.join()

    def _beat(self) -> None:
        interval = self.ctx.settings.job_lease_seconds / 3
        while not self.done.wait(interval):
            try:
                with self.ctx.db.session(write=True) as session:
                    held = service.renew_lease(session, self.claim,
                                               self.ctx.settings.job_lease_seconds)
            except HarkError:
                log.warning("job %s: could not renew the lease", self.claim.job_id)
                continue
            if not held:
                self.lost.set()
                return

    def is_canceled(self) -> bool:
        if self.ctx.stopping():
            raise ShutdownRequested
        if time.monotonic() > self.deadline:
            raise JobTimeoutError(f"the job ran past its time limit of "
                                  f"{self.time_limit:.0f} s")
        return self.lost.is_set()

    def on_progress(self, stage: str, progress: float) -> None:
        now = time.monotonic()
        if stage == self._last_stage and now - self._last_write < PROGRESS_WRITE_SECONDS:
            return
        self._last_stage, self._last_write = stage, now
        try:
            with self.ctx.db.session(write=True) as session:
                held = service.record_progress(session, self.claim, stage, progress)
        except DatabaseError as exc:
            # Progress is advisory; the outcome is what must be recorded (see outcome).
            log.warning("job %s: cannot record progress: %s", self.claim.job_id, exc)
            held = True
        if not held:
            self.lost.set()
            return
        self.ctx.channel.publish(self.claim.job_id,
                                 events.progress(self.claim.job_id, stage, progress))

    def on_segment(self, segment: Segment) -> None:
        self.ctx.channel.publish(self.claim.job_id, events.segment(self.claim.job_id, segment))
