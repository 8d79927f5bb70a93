"""The database layer on real databases: a SQLite file and the PostgreSQL server."""

from __future__ import annotations

import os
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from typer.testing import CliRunner

from hark.db import (
    Base,
    Database,
    current_revision,
    display_url,
    downgrade,
    ensure_schema,
    head_revision,
    make_engine,
    normalize_url,
    open_database,
    upgrade,
)
from hark.db import models as _models  # noqa: F401  (every table on Base.metadata)
from hark.db.migrate import MIGRATIONS_DIR, include_name
from hark.errors import DatabaseError, MissingDependencyError, SchemaMismatchError

POSTGRES_SERVER_URL = os.environ.get(
    "HARK_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
HARK_TABLES = {"speaker_profiles", "voice_samples", "jobs", "uploads", "api_keys",
               "transcript_states", "transcript_revisions", "transcript_segments",
               "organisations", "users", "memberships", "refresh_tokens", "password_resets",
               "audit_events"}


@contextmanager
def throwaway_postgres() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards.

    Skips when the server is unreachable, unless HARK_REQUIRE_SERVICES=1 (CI).
    """
    admin = make_engine(POSTGRES_SERVER_URL, isolation_level="AUTOCOMMIT",
                        connect_args={"connect_timeout": 3})
    name = f"hark_test_{uuid.uuid4().hex[:12]}"
    try:
        try:
            with admin.connect() as connection:
                connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        except (sa.exc.OperationalError, MissingDependencyError) as exc:
            reason = f"PostgreSQL at {display_url(POSTGRES_SERVER_URL)} unavailable: {exc}"
            if os.environ.get("HARK_REQUIRE_SERVICES") == "1":
                pytest.fail(f"{reason}; HARK_REQUIRE_SERVICES=1 requires it")
            pytest.skip(reason)
        yield normalize_url(POSTGRES_SERVER_URL).set(database=name).render_as_string(
            hide_password=False)
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


# The database kinds a test runs on, for `params=` and `parametrize`. Only the PostgreSQL
# run needs a server, so only it is marked `services`: every test that takes these
# parameters inherits the mark there, and `pytest -m "not services"` still runs it on
# SQLite.
DATABASES = ("sqlite", pytest.param("postgresql", marks=pytest.mark.services))


@pytest.fixture(params=DATABASES)
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database of each kind."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'db' / 'hark.db'}"
    else:
        with throwaway_postgres() as url:
            yield url


def table_names(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


# URLs and engines


@pytest.mark.parametrize(("given", "expected"), [
    ("postgres://u:p@db:5432/hark", "postgresql+psycopg://u:p@db:5432/hark"),
    ("postgresql://u@db/hark", "postgresql+psycopg://u@db/hark"),
    ("postgresql+psycopg://u@db/hark", "postgresql+psycopg://u@db/hark"),
    ("postgresql+psycopg2://u@db/hark", "postgresql+psycopg2://u@db/hark"),
    ("sqlite:////var/lib/hark/hark.db", "sqlite:////var/lib/hark/hark.db"),
    ("sqlite://", "sqlite://"),
])
def test_normalize_url(given: str, expected: str) -> None:
    assert normalize_url(given).render_as_string(hide_password=False) == expected


def test_display_url_hides_the_password_and_bad_urls_are_refused() -> None:
    shown = display_url("postgres://hark:s3cret@db/hark")
    assert "s3cret" not in shown and shown.startswith("postgresql+psycopg://hark:")
    with pytest.raises(DatabaseError):
        normalize_url("not a url")
    with pytest.raises(DatabaseError, match="unsupported database"):
        make_engine("mysql://u@db/hark")


def test_postgres_without_psycopg_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(MissingDependencyError, match=r"hark\[postgres\]"):
        make_engine("postgresql://u@db/hark")


def test_sqlite_engine_makes_its_directory_and_sets_pragmas(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "hark.db"
    engine = make_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert path.is_file()
    finally:
        engine.dispose()


def test_sqlite_enforces_foreign_keys_and_cascades(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hark.db'}"
    upgrade(url)
    engine = make_engine(url)
    profile = ("INSERT INTO speaker_profiles (id, tenant_id, name, embedder, dimension, "
               "centroid, sample_count, speech_seconds) VALUES ('p1', 'local', 'Ann', 'x', 2, "
               "x'0000803f00000000', 1, 3.0)")
    sample = ("INSERT INTO voice_samples (id, profile_id, embedding, speech_seconds) "
              "VALUES (:id, :profile, x'0000803f00000000', 3.0)")
    try:
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as connection:
            connection.execute(sa.text(sample), {"id": "s0", "profile": "missing"})
        with engine.begin() as connection:
            connection.exec_driver_sql(profile)
            connection.execute(sa.text(sample), {"id": "s1", "profile": "p1"})
            connection.exec_driver_sql("DELETE FROM speaker_profiles")
            assert connection.exec_driver_sql("SELECT count(*) FROM voice_samples").scalar() == 0
    finally:
        engine.dispose()


def test_sqlite_transactions_and_savepoints_are_real(tmp_path: Path) -> None:
    with Database(f"sqlite:///{tmp_path / 'hark.db'}") as database:
        with database.engine.begin() as connection:
            connection.exec_driver_sql("CREATE TABLE t (v INTEGER)")
        with database.session() as session:
            session.execute(sa.text("INSERT INTO t VALUES (1)"))
            savepoint = session.begin_nested()
            session.execute(sa.text("INSERT INTO t VALUES (2)"))
            savepoint.rollback()
        with pytest.raises(RuntimeError), database.session(write=True) as session:
            session.execute(sa.text("INSERT INTO t VALUES (3)"))
            raise RuntimeError("abandon the unit of work")
        with database.session() as session:
            assert session.execute(sa.text("SELECT v FROM t")).scalars().all() == [1]
        # DDL is transactional too, which keeps a failed migration from half-applying.
        with pytest.raises(RuntimeError), database.engine.begin() as connection:
            connection.exec_driver_sql("DROP TABLE t")
            raise RuntimeError("roll the DDL back")
        assert "t" in set(sa.inspect(database.engine).get_table_names())


# Migrations, on both databases


def test_migrations_upgrade_an_empty_database_to_match_the_models(empty_url: str) -> None:
    assert current_revision(empty_url) is None
    assert upgrade(empty_url) == head_revision() == current_revision(empty_url)
    assert table_names(empty_url) >= HARK_TABLES
    engine = make_engine(empty_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"include_name": include_name})
            assert compare_metadata(context, Base.metadata) == []
            inspector = sa.inspect(connection)
            uniques = inspector.get_unique_constraints("speaker_profiles")
            assert [u["column_names"] for u in uniques] == [["tenant_id", "name"]]
            (fk,) = inspector.get_foreign_keys("voice_samples")
            assert fk["referred_table"] == "speaker_profiles"
            assert fk["options"].get("ondelete") == "CASCADE"
    finally:
        engine.dispose()


def test_migrations_round_trip_down_and_up(empty_url: str) -> None:
    upgrade(empty_url)
    assert downgrade(empty_url, "base") is None
    assert not HARK_TABLES & table_names(empty_url)
    assert upgrade(empty_url) == head_revision()
    assert table_names(empty_url) >= HARK_TABLES
    assert ensure_schema(empty_url) == head_revision()


def test_every_tenant_in_use_becomes_an_organisation_and_keys_keep_their_access(
        empty_url: str) -> None:
    upgrade(empty_url, "0006")
    engine = make_engine(empty_url)
    try:
        with engine.begin() as connection:
            connection.execute(sa.text(
                "INSERT INTO api_keys (id, tenant_id, name, prefix, key_hash, webhook_secret) "
                "VALUES ('k1', 'acme', 'ci', 'hk_1', 'h1', 's1')"))
            connection.execute(sa.text(
                "INSERT INTO api_keys (id, tenant_id, name, prefix, key_hash, webhook_secret) "
                "VALUES ('k2', 'globex', 'ci', 'hk_2', 'h2', 's2')"))
        upgrade(empty_url)
        with engine.connect() as connection:
            rows = connection.execute(sa.text(
                "SELECT id, name, quota_concurrent_jobs FROM organisations ORDER BY id")).all()
            keys = connection.execute(sa.text(
                "SELECT rate_limit, scopes, user_id FROM api_keys")).all()
    finally:
        engine.dispose()
    assert [tuple(r) for r in rows] == [("acme", "acme", None), ("globex", "globex", None),
                                        ("local", "local", None)]
    # Every job, speaker and live route, as before scopes; none of the admin routes.
    before = "jobs:read jobs:write live speakers:write"
    assert [tuple(k) for k in keys] == [(None, before, None), (None, before, None)]


def test_concurrent_upgrades_queue_instead_of_racing(empty_url: str) -> None:
    results: list[str | None] = []
    errors: list[BaseException] = []

    def migrate() -> None:
        try:
            results.append(ensure_schema(empty_url))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=migrate) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert results == [head_revision()] * 4


def test_a_database_from_a_newer_hark_is_refused(empty_url: str) -> None:
    upgrade(empty_url)
    engine = make_engine(empty_url)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql("UPDATE alembic_version SET version_num = 'future'")
    finally:
        engine.dispose()
    with pytest.raises(SchemaMismatchError, match="upgrade Hark"):
        ensure_schema(empty_url)
    with pytest.raises(SchemaMismatchError):
        open_database(empty_url)


def test_sessions_commit_at_the_edge_or_roll_back(empty_url: str) -> None:
    with open_database(empty_url) as database:
        with database.session() as session:
            session.execute(sa.text("CREATE TABLE scratch (v INTEGER)"))
            session.execute(sa.text("INSERT INTO scratch VALUES (1)"))
        with pytest.raises(ValueError), database.session(write=True) as session:
            session.execute(sa.text("INSERT INTO scratch VALUES (2)"))
            raise ValueError("not committed")
        with database.session() as session:
            assert session.execute(sa.text("SELECT v FROM scratch")).scalars().all() == [1]


def test_an_unreachable_database_is_a_clear_error() -> None:
    url = "postgresql://hark:secret@127.0.0.1:1/hark"
    with pytest.raises(DatabaseError, match="cannot use the database") as caught:
        current_revision(url)
    assert "secret" not in str(caught.value)


def test_migration_scripts_ship_inside_the_package() -> None:
    assert (MIGRATIONS_DIR / "env.py").is_file()
    assert (MIGRATIONS_DIR / "script.py.mako").is_file()
    assert list((MIGRATIONS_DIR / "versions").glob("v*.py"))


# `hark db`


def test_db_commands(cli_env: Path) -> None:
    from hark.cli.db import app

    runner = CliRunner()
    result = runner.invoke(app, ["current"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("empty")
    result = runner.invoke(app, ["upgrade"])
    assert result.exit_code == 0, result.output
    assert f"to revision {head_revision()}" in result.stdout
    assert (cli_env / "hark.db").is_file()
    result = runner.invoke(app, ["upgrade"])
    assert "Already at revision" in result.stdout
    result = runner.invoke(app, ["current"])
    assert result.stdout.strip() == f"{head_revision()} (head)"


def test_db_command_reports_an_unreachable_database(
    cli_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hark.cli.db import app
    from hark.config import get_settings

    monkeypatch.setenv("HARK_DATABASE_URL", "postgresql://hark:pw@127.0.0.1:1/hark")
    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["upgrade"])
    assert result.exit_code == 1
    assert "DATABASE_ERROR" in result.output and "Traceback" not in result.output
