"""The job service's state machine on both databases: claiming order, fenced updates,
recovery of interrupted jobs, cancel, pagination, and the housekeeping sweep."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from hark.db import Database, open_database
from hark.db.base import utcnow
from hark.errors import JobNotFoundError, OptionError, QueueFullError
from hark.events import InProcessBus
from hark.jobs import janitor, service
from hark.jobs.models import Job, Upload
from hark.jobs.routing import QUEUES, parse_queues
from hark.jobs.schemas import JobOptions
from hark.jobs.service import Claim, NewMedia
from hark.storage.local import LocalStorage
from tests.support.common import wait_for, wait_for_async
from tests.test_db import DATABASES, throwaway_postgres


@pytest.fixture(params=DATABASES)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        database = open_database(f"sqlite:///{tmp_path / 'hark.db'}")
        yield database
        database.dispose()
    else:
        with throwaway_postgres() as url:
            database = open_database(url)
            yield database
            database.dispose()


def submit(db: Database, *, model: str = "pocketsphinx", priority: int = 0,
           tenant: str = "a", max_queued: int = 100) -> str:
    with db.session(write=True) as session:
        job = service.create_job(
            session, tenant_id=tenant, api_key_id=None,
            options=JobOptions(priority=priority), model=model,
            media=NewMedia(key="media/x/source", filename="x.wav", size=10, duration=1.0),
            max_queued=max_queued)
        return job.id


def claim(db: Database, queues: tuple[str, ...] = QUEUES, worker: str = "h/1/0") -> Job | None:
    with db.session(write=True) as session:
        return service.claim_next(session, queues, worker, lease_seconds=30)


def test_claims_by_queue_then_priority_then_age(db: Database) -> None:
    low = submit(db, priority=0)
    time.sleep(0.01)
    high = submit(db, priority=5)
    large = submit(db, model="large-v3", priority=9)
    first, second = claim(db, ("small",)), claim(db, ("small",))
    assert first is not None and second is not None
    assert [first.id, second.id] == [high, low]
    assert claim(db, ("small",)) is None
    third = claim(db, ("large",))
    assert third is not None and third.id == large and third.queue == "large"
    assert (third.status, third.attempts, third.worker_id) == ("running", 1, "h/1/0")


def test_fenced_updates_ignore_a_stale_attempt(db: Database) -> None:
    job_id = submit(db)
    job = claim(db)
    assert job is not None
    stale = Claim(job_id, "h/1/0", job.attempts)
    with db.session(write=True) as session:
        assert service.record_progress(session, stale, "transcribing", 0.5)
        stored = session.get(Job, job_id)
        assert stored is not None
        stored.lease_expires_at = utcnow() - timedelta(seconds=1)
    with db.session(write=True) as session:
        recovered = service.recover_expired(session, max_attempts=3)
        assert [j.id for j in recovered] == [job_id]
    again = claim(db, worker="h/2/0")
    assert again is not None and again.attempts == 2
    with db.session(write=True) as session:
        # The first attempt comes back from the dead: nothing it says counts any more.
        assert not service.record_progress(session, stale, "transcribing", 0.9)
        assert not service.complete(session, stale, result_key="r", duration=1.0,
                                    model="m", language="de", timings={}, has_webhook=False)
        current = Claim(job_id, "h/2/0", 2)
        assert service.complete(session, current, result_key="results/x", duration=1.0,
                                model="pocketsphinx", language="en", timings={"decode": 0.1},
                                has_webhook=True)
    with db.session() as session:
        done = session.get(Job, job_id)
        assert done is not None
        assert (done.status, done.progress, done.result_key) == ("completed", 1.0, "results/x")
        assert done.language == "en"  # the winner's, not the stale attempt's
        assert done.webhook_status == "pending" and done.finished_at is not None


def test_interrupted_job_fails_after_the_attempt_limit(db: Database) -> None:
    job_id = submit(db)
    for attempt in (1, 2):
        job = claim(db)
        assert job is not None and job.attempts == attempt
        with db.session(write=True) as session:
            stored = session.get(Job, job_id)
            assert stored is not None
            status = service.recover(session, stored, max_attempts=2, reason="test")
        assert status == ("queued" if attempt == 1 else "failed")
    with db.session() as session:
        failed = session.get(Job, job_id)
        assert failed is not None and failed.error is not None
        assert failed.error["error_code"] == "WORKER_LOST"


def test_release_on_shutdown_does_not_count_the_attempt(db: Database) -> None:
    job_id = submit(db)
    job = claim(db)
    assert job is not None
    with db.session(write=True) as session:
        assert service.release(session, Claim(job_id, "h/1/0", 1), count_attempt=False)
    with db.session() as session:
        stored = session.get(Job, job_id)
        assert stored is not None
        assert (stored.status, stored.attempts, stored.worker_id) == ("queued", 0, None)


def test_cancel_and_tenancy(db: Database) -> None:
    queued = submit(db)
    with db.session(write=True) as session, pytest.raises(JobNotFoundError):
        service.cancel_job(session, "b", queued)
    with db.session(write=True) as session:
        job, changed = service.cancel_job(session, "a", queued)
        assert changed and job.status == "canceled"
    with db.session(write=True) as session:
        job, changed = service.cancel_job(session, "a", queued)
        assert not changed
    assert claim(db) is None  # a canceled job is never claimed


def test_failure_is_recorded_with_its_code(db: Database) -> None:
    job_id = submit(db)
    job = claim(db)
    assert job is not None
    with db.session(write=True) as session:
        assert service.fail(session, Claim(job_id, "h/1/0", 1),
                            OptionError("bad", field="x"), has_webhook=False)
    with db.session() as session:
        stored = session.get(Job, job_id)
        assert stored is not None and stored.status == "failed"
        assert stored.error == {"error": "bad", "error_code": "INVALID_OPTION",
                                "details": {"field": "x"}}
        assert stored.webhook_status is None


def test_pagination_is_newest_first_without_gaps(db: Database) -> None:
    ids = [submit(db) for _ in range(7)]
    submit(db, tenant="b")
    seen: list[str] = []
    cursor = None
    while True:
        with db.session() as session:
            jobs, cursor = service.list_jobs(session, "a", status=None, limit=3, cursor=cursor)
            seen += [j.id for j in jobs]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    with db.session() as session, pytest.raises(OptionError):
        service.list_jobs(session, "a", status=None, limit=3, cursor="garbage!")


def test_queue_limit_is_per_tenant(db: Database) -> None:
    submit(db, max_queued=1, tenant="a")
    with pytest.raises(QueueFullError) as full:
        submit(db, max_queued=1, tenant="a")
    assert full.value.details["limit"] == 1
    submit(db, max_queued=1, tenant="b")  # a's backlog never refuses b


def test_tenants_take_turns_within_a_priority(db: Database) -> None:
    backlog = [submit(db, tenant="a", max_queued=1000) for _ in range(100)]
    first = claim(db, worker="h/1/0")
    assert first is not None and first.id == backlog[0]
    late = submit(db, tenant="b")
    # a has a job running and 99 waiting; b's one job, queued last, starts next.
    second = claim(db, worker="h/1/1")
    assert second is not None and second.id == late
    # Both now have one running: the older waiting job goes first, and a's order holds.
    third = claim(db, worker="h/1/2")
    assert third is not None and third.id == backlog[1]
    # Priority still comes before turns.
    urgent = submit(db, tenant="a", priority=5, max_queued=1000)
    later = submit(db, tenant="c")
    nxt = claim(db, worker="h/1/3")
    assert nxt is not None and nxt.id == urgent
    nxt = claim(db, worker="h/1/4")
    assert nxt is not None and nxt.id == later  # c runs nothing yet: its turn


def test_parse_queues() -> None:
    assert parse_queues(None) == QUEUES
    assert parse_queues("large, small,large") == ("large", "small")
    with pytest.raises(ValueError, match="huge"):
        parse_queues("small,huge")


def test_janitor_removes_expired_uploads_and_their_objects(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'hark.db'}")
    storage = LocalStorage(tmp_path / "storage")
    with db.session(write=True) as session:
        for name, expires in (("old", utcnow() - timedelta(seconds=1)),
                              ("live", utcnow() + timedelta(hours=1))):
            session.add(Upload(id=name, tenant_id="a", filename="f", declared_size=1,
                               token_hash="0" * 64, storage_key=f"uploads/{name}/source",
                               status="ready", expires_at=expires))
            storage.put_bytes(f"uploads/{name}/source", b"x")
    assert janitor.sweep(db, storage) == (1, 0)
    assert not storage.exists("uploads/old/source") and storage.exists("uploads/live/source")
    with db.session() as session:
        assert session.get(Upload, "old") is None and session.get(Upload, "live") is not None
    db.dispose()


def test_bus_delivers_in_order_from_other_threads() -> None:
    bus = InProcessBus(max_backlog=1000)

    async def main() -> list[int]:
        subscription = bus.subscribe("j")
        other = bus.subscribe("k")

        def produce() -> None:
            for n in range(200):
                bus.publish("j", {"type": "progress", "n": n})
            bus.publish("j", {"type": "completed"})

        threading.Thread(target=produce).start()
        received = []
        async for event in subscription:
            if event["type"] == "completed":
                break
            received.append(event["n"])
        assert await other.get(timeout=0.05) is None  # nothing for another job
        subscription.close()
        other.close()
        assert bus.subscriber_count() == 0
        return received

    assert asyncio.run(main()) == list(range(200))


def test_bus_drops_a_subscriber_that_falls_too_far_behind() -> None:
    bus = InProcessBus(max_backlog=5)

    async def main() -> int:
        subscription = bus.subscribe("j")
        for n in range(20):
            bus.publish("j", {"type": "progress", "n": n})
        await wait_for_async(lambda: bus.subscriber_count() == 0,
                             message="a subscriber 15 events behind was kept")
        count = 0
        async for _ in subscription:
            count += 1
        return count

    assert asyncio.run(main()) == 5



def test_owner_gone_sees_dead_and_zombie_workers() -> None:
    import os
    import socket
    import subprocess

    from hark.workers.identity import owner_gone, parse_worker_id, worker_id

    me = worker_id(0)
    assert parse_worker_id(me) == (socket.gethostname(), os.getpid())
    assert not owner_gone(me)
    child = subprocess.Popen(["true"])
    wait_for(lambda: owner_gone(f"{socket.gethostname()}/{child.pid}/0"),  # exited, not reaped
             interval=0.02, message="an exited child still counts as a live worker")
    child.wait()
    assert owner_gone(f"{socket.gethostname()}/{child.pid}/0")
    assert not owner_gone(f"elsewhere/{child.pid}/0")  # another host: its lease decides
    assert not owner_gone("not-a-worker-id")


@pytest.mark.parametrize("backend", DATABASES)
def test_the_status_reader_sees_what_the_orm_sees(tmp_path: Path, backend: str) -> None:
    """Status reads (SQLite: straight from one connection, on the event loop; PostgreSQL:
    a Core read): the job as the ORM shows it, never a stale copy, never another
    tenant's."""
    from contextlib import ExitStack

    from hark.jobs.reader import JobReader
    from hark.jobs.schemas import JobOut

    def orm(job_id: str) -> JobOut:
        with database.session() as session:
            return JobOut.of(service.get_job(session, "a", job_id))

    with ExitStack() as stack:
        url = f"sqlite:///{tmp_path / 'hark.db'}" if backend == "sqlite" else \
            stack.enter_context(throwaway_postgres())
        database = open_database(url)
        stack.callback(database.dispose)
        reader = JobReader(database)
        stack.callback(reader.close)
        job_id = submit(database, tenant="a")
        with pytest.raises(JobNotFoundError):
            asyncio.run(reader.read("a", "no-such-job"))
        assert asyncio.run(reader.read("a", job_id)) == orm(job_id)
        # Completed in another connection: the reader's next read has it (no read
        # transaction kept it on an older snapshot), typed as the ORM types it.
        running = claim(database)
        assert running is not None
        with database.session(write=True) as session:
            assert service.complete(session, Claim(job_id, "h/1/0", 1), result_key="r/1",
                                    duration=1.0, model="m", language="de",
                                    timings={"decode": 0.5}, has_webhook=True)
        done = asyncio.run(reader.read("a", job_id))
        assert done == orm(job_id)
        assert (done.status, done.language, done.timings) == ("completed", "de", {"decode": 0.5})
        assert done.finished_at is not None and done.finished_at.tzinfo is not None
        assert done.purged is False and done.webhook is None
        with pytest.raises(JobNotFoundError):
            asyncio.run(reader.read("b", job_id))  # another tenant's job
