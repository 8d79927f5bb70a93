"""Sending job webhooks from the database, so none is lost to a restart.

Finishing a job marks its webhook `pending` in the same transaction; the server's
dispatcher thread sends due ones, signed with the secret of the API key that
submitted the job, and retries failures with backoff until `webhook_max_attempts`.
Before each send the row's next-attempt time is pushed past the attempt's timeout,
a short lease, so two dispatchers (several API processes) never send one webhook
twice at the same moment.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
from datetime import timedelta
from pathlib import Path

from sqlalchemy import update

from hark.config import Settings
from hark.db import Database
from hark.db.base import utcnow
from hark.errors import HarkError
from hark.jobs.models import Job
from hark.jobs.repository import JobRepository
from hark.jobs.schemas import JobOut
from hark.keys.models import ApiKey
from hark.net.fetch import check_url
from hark.webhooks.delivery import backoff_seconds, deliver

log = logging.getLogger("hark.webhooks")

POLL_SECONDS = 0.5
BATCH = 20


def check_webhook_url(url: str, settings: Settings) -> None:
    check_url(url, field="webhook_url", allowed_networks=settings.fetch_allowed_networks)


def anonymous_secret(settings: Settings) -> str:
    """The secret for jobs submitted without a key: configured, or made once and kept."""
    if settings.webhook_secret:
        return settings.webhook_secret
    path = Path(settings.data_dir) / "webhook_secret"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        secret = "whsec_" + secrets.token_urlsafe(32)
        path.write_text(secret)
        path.chmod(0o600)
        return secret


class WebhookDispatcher:
    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="hark-webhooks", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(self.settings.webhook_timeout_seconds + 5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                sent = self.run_once()
            except HarkError as exc:
                log.warning("webhook dispatch paused: %s", exc)
                sent = 0
            if not sent:
                self._wake.wait(POLL_SECONDS)
                self._wake.clear()

    def run_once(self) -> int:
        """Send every due webhook once; returns how many were attempted."""
        attempted = 0
        for job_id in self._claim_due():
            self._send(job_id)
            attempted += 1
        return attempted

    def _claim_due(self) -> list[str]:
        now = utcnow()
        lease = now + timedelta(seconds=self.settings.webhook_timeout_seconds + 5)
        claimed: list[str] = []
        with self.db.session(write=True) as session:
            for job in JobRepository(session).due_webhooks(now, BATCH):
                result = session.execute(
                    update(Job).where(Job.id == job.id, Job.webhook_status == "pending",
                                      Job.webhook_next_at == job.webhook_next_at)
                    .values(webhook_next_at=lease).execution_options(synchronize_session=False))
                if result.rowcount:  # type: ignore[attr-defined]
                    claimed.append(job.id)
        return claimed

    def _send(self, job_id: str) -> None:
        with self.db.session() as session:
            job = session.get(Job, job_id)
            if job is None or job.webhook_url is None:
                return
            key = session.get(ApiKey, job.api_key_id) if job.api_key_id else None
            secret = key.webhook_secret if key is not None else anonymous_secret(self.settings)
            event = f"job.{job.status}"
            body = json.dumps({"event": event, "job": JobOut.of(job).model_dump(mode="json"),
                               "sent_at": utcnow().isoformat().replace("+00:00", "Z")},
                              ensure_ascii=False).encode()
            url, attempt = job.webhook_url, job.webhook_attempts + 1
        outcome = deliver(url, body, secret=secret, event=event,
                          delivery_id=f"{job_id}:{event}",
                          timeout=self.settings.webhook_timeout_seconds,
                          allowed_networks=self.settings.fetch_allowed_networks)
        values: dict[str, object] = {"webhook_attempts": attempt,
                                     "webhook_error": outcome.error}
        if outcome.ok:
            values.update(webhook_status="delivered", webhook_next_at=None)
        elif outcome.retryable and attempt < self.settings.webhook_max_attempts:
            values["webhook_next_at"] = utcnow() + timedelta(seconds=backoff_seconds(attempt))
        else:
            values.update(webhook_status="failed", webhook_next_at=None)
        with self.db.session(write=True) as session:
            session.execute(update(Job).where(Job.id == job_id).values(**values)
                            .execution_options(synchronize_session=False))
        log.info("webhook %s for job %s: %s", event, job_id,
                 "delivered" if outcome.ok else outcome.error)
