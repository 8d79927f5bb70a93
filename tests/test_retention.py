"""Retention and erasure on both databases: each organisation's policy applied by the
sweep (idempotent; two replicas at once delete nothing twice and miss nothing), and an
organisation erased with nothing of it left in any table or in storage."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from hark.audit.actor import COMMAND_LINE
from hark.cli import app as cli
from hark.config import get_settings
from hark.db import Database, open_database
from hark.db.base import Base, utcnow
from hark.jobs.keys import media_key, result_key, results_prefix
from hark.jobs.models import COMPLETED, FAILED, RUNNING, Job, Upload
from hark.keys.service import create_key
from hark.organisations.erasure import erase_organisation
from hark.organisations.retention import sweep
from hark.organisations.service import ensure_organisation, set_retention
from hark.speakers.models import SpeakerProfile, VoiceSample
from hark.storage.local import LocalStorage
from hark.transcripts.models import TranscriptState
from tests.test_db import DATABASES, throwaway_postgres

runner = CliRunner()


class CountingStorage(LocalStorage):
    """Local storage that remembers how often each prefix was deleted."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.deleted: Counter[str] = Counter()
        self._lock = threading.Lock()

    def delete_prefix(self, prefix: str) -> int:
        with self._lock:
            self.deleted[prefix] += 1
        return super().delete_prefix(prefix)


@pytest.fixture(params=DATABASES)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'hark.db'}"
    else:
        with throwaway_postgres() as made:
            yield made


@pytest.fixture
def db(url: str) -> Iterator[Database]:
    with open_database(url) as database:
        yield database


def add_job(db: Database, storage: LocalStorage, tenant: str, *, days_ago: float | None,
            status: str = COMPLETED) -> str:
    return add_jobs(db, storage, tenant, 1, days_ago=days_ago, status=status)[0]


def add_jobs(db: Database, storage: LocalStorage, tenant: str, count: int, *,
             days_ago: float | None, status: str = COMPLETED) -> list[str]:
    """Jobs that finished `days_ago` (None: still running), each with its recording, a
    result and transcript state stored."""
    with db.session(write=True) as session:
        ensure_organisation(session, tenant)
        jobs = [Job(tenant_id=tenant, status=status, queue="small", priority=0, options={},
                    filename="talk.wav", model="tiny.en", media_bytes=4,
                    finished_at=None if days_ago is None else utcnow() - timedelta(days_ago))
                for _ in range(count)]
        session.add_all(jobs)
        session.flush()
        for job in jobs:
            job.media_key, job.result_key = media_key(job.id), result_key(job.id, 1)
            session.add(TranscriptState(job_id=job.id, tenant_id=tenant))
        ids = [job.id for job in jobs]
    for job_id in ids:
        storage.put_bytes(media_key(job_id), b"RIFF")
        storage.put_bytes(result_key(job_id, 1), b"{}")
    return ids


def job_row(db: Database, job_id: str) -> Job | None:
    with db.session() as session:
        return session.get(Job, job_id)


def test_each_organisations_policy_is_applied_once(db: Database, tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "storage")
    old, recent, fresh = (add_job(db, storage, "ret", days_ago=d) for d in (40, 10, 2))
    running = add_job(db, storage, "ret", days_ago=None, status=RUNNING)
    failed_old = add_job(db, storage, "ret", days_ago=40, status=FAILED)
    elsewhere = add_job(db, storage, "other", days_ago=400)
    with db.session(write=True) as session:
        set_retention(session, "ret", media_days=7, results_days=30,
                      actor=COMMAND_LINE)

    report = sweep(db, storage)
    assert (report.jobs_purged, report.media_deleted) == (2, 1)
    assert report.organisations == ["ret"]
    for purged in (old, failed_old):
        job = job_row(db, purged)
        assert job is not None and job.purged and job.media_key is None and job.result_key is None
        assert not storage.exists(media_key(purged))
        assert not storage.exists(result_key(purged, 1))
        with db.session() as session:
            assert session.get(TranscriptState, purged) is None
    kept = job_row(db, recent)
    assert kept is not None and kept.media_key is None and not kept.purged
    assert not storage.exists(media_key(recent)) and storage.exists(result_key(recent, 1))
    for untouched in (fresh, running, elsewhere):
        job = job_row(db, untouched)
        assert job is not None and job.media_key and storage.exists(media_key(untouched))
    again = sweep(db, storage)
    assert (again.jobs_purged, again.media_deleted) == (0, 0)


def test_two_replicas_sweeping_at_once(url: str, tmp_path: Path) -> None:
    storage = CountingStorage(tmp_path / "storage")
    with open_database(url) as setup:
        due = add_jobs(setup, storage, "busy", 250, days_ago=40)  # two batches
        with setup.session(write=True) as session:
            set_retention(session, "busy", results_days=30, actor=COMMAND_LINE)
    reports = []

    def replica() -> None:
        with open_database(url) as own:
            reports.append(sweep(own, storage))

    threads = [threading.Thread(target=replica) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert sum(r.jobs_purged for r in reports) == len(due)
    for job_id in due:  # every file deleted, and only once
        assert storage.deleted[media_key(job_id)] == 1
        assert storage.deleted[results_prefix(job_id)] == 1
    assert not any((tmp_path / "storage").rglob("*.wav"))
    assert [p for p in (tmp_path / "storage").rglob("*") if p.is_file()] == []


def tenant_rows(db: Database, tenant: str) -> dict[str, int]:
    """Rows of `tenant` in every table that has a tenant (or is the organisation)."""
    counts: dict[str, int] = {}
    with db.session() as session:
        for table in Base.metadata.sorted_tables:
            column = table.c.get("tenant_id")
            if table.name == "organisations":
                column = table.c.id
            if column is not None:
                counts[table.name] = session.scalar(
                    sa.select(sa.func.count()).select_from(table).where(column == tenant)) or 0
    return counts


def test_an_organisation_is_erased_and_nothing_of_it_is_left(db: Database,
                                                            tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "storage")
    jobs = [add_job(db, storage, "gone", days_ago=d) for d in (1, 2, None)]
    kept = add_job(db, storage, "stays", days_ago=1)
    with db.session(write=True) as session:
        create_key(session, name="ci", tenant_id="gone", actor=COMMAND_LINE)
        profile = SpeakerProfile(tenant_id="gone", name="Ada", embedder="x", dimension=2,
                                 centroid=b"\0" * 8)
        session.add(profile)
        session.flush()
        session.add(VoiceSample(profile_id=profile.id, embedding=b"\0" * 8,
                                speech_seconds=3.0))
        session.add(Upload(tenant_id="gone", filename="x.wav", declared_size=4,
                           token_hash="t", storage_key="uploads/gone-slot",
                           expires_at=utcnow() + timedelta(hours=1)))
    storage.put_bytes("uploads/gone-slot", b"RIFF")

    report = erase_organisation(db, storage, "gone")
    assert (report.jobs, report.upload_slots, report.voice_profiles, report.voice_samples,
            report.api_keys) == (3, 1, 1, 1, 1)
    assert set(tenant_rows(db, "gone").values()) == {0}
    for job_id in jobs:
        assert not storage.exists(media_key(job_id)) and not storage.exists(result_key(job_id, 1))
    assert not storage.exists("uploads/gone-slot")
    assert storage.exists(media_key(kept)) and tenant_rows(db, "stays")["jobs"] == 1


@pytest.fixture
def local_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("HARK_DATA_DIR", str(tmp_path / "data"))
    for name in ("HARK_DATABASE_URL", "HARK_STORAGE_URL"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield tmp_path / "data"
    get_settings.cache_clear()


def test_the_orgs_command_sets_retention_sweeps_and_erases(local_cli: Path) -> None:
    assert runner.invoke(cli, ["orgs", "create", "acme"]).exit_code == 0
    set_ = runner.invoke(cli, ["orgs", "retention", "acme", "--media-days", "7",
                               "--results-days", "90"])
    assert set_.exit_code == 0, set_.output
    assert '"media_days": 7' in set_.stdout and '"results_days": 90' in set_.stdout
    kept = runner.invoke(cli, ["orgs", "retention", "acme", "--media-days", "keep"])
    assert '"media_days": null' in kept.stdout and '"results_days": 90' in kept.stdout
    swept = runner.invoke(cli, ["orgs", "sweep"])
    assert swept.exit_code == 0 and '"organisations": ["acme"]' in swept.stdout
    for args, code, message in (
            (["orgs", "retention", "acme", "--media-days", "0"], 1, "INVALID_OPTION"),
            (["orgs", "retention", "acme", "--results-days", "soon"], 1, "INVALID_OPTION"),
            (["orgs", "retention", "nobody", "--media-days", "3"], 1, "NOT_FOUND"),
            (["orgs", "erase", "acme"], 2, "--yes"),
            (["orgs", "erase", "nobody", "--yes"], 1, "NOT_FOUND")):
        result = runner.invoke(cli, args)
        assert result.exit_code == code and message in result.output, (args, result.output)
    erased = runner.invoke(cli, ["orgs", "erase", "acme", "--yes"])
    assert erased.exit_code == 0 and '"organisation": "acme"' in erased.stdout
    assert "acme" not in runner.invoke(cli, ["orgs", "list"]).stdout
