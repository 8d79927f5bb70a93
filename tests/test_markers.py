"""The suite's marks: every test that runs on PostgreSQL is marked `services`, and its
SQLite run is not, so `pytest -m "not services"` (the quick subset of CONTRIBUTING.md)
needs no database server and still tests each of them on SQLite.

The suite is collected in a pytest process of its own, with a plugin that writes down
each test's database and marks: collection alone, so nothing is started.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.marker_report import REPORT_VARIABLE

ROOT = Path(__file__).resolve().parents[1]


def collected_runs(report: Path) -> list[dict[str, Any]]:
    """Every test of tests/ as collected: node id, database kinds, marked `services`."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-n", "0",
         "-p", "no:cacheprovider", "-p", "tests.support.marker_report", "tests"],
        cwd=ROOT, env={**os.environ, REPORT_VARIABLE: str(report)},
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    runs: list[dict[str, Any]] = json.loads(report.read_text(encoding="utf-8"))
    return runs


def on_sqlite(nodeid: str) -> str:
    """The node id of the same test's SQLite run (the kind is in the bracketed ids)."""
    name, _, ids = nodeid.partition("[")
    return f"{name}[{ids.replace('postgresql', 'sqlite')}"


@pytest.mark.slow
def test_postgresql_runs_are_marked_services_and_their_sqlite_runs_are_not(
        tmp_path: Path) -> None:
    runs = collected_runs(tmp_path / "runs.json")
    postgresql = [run for run in runs if "postgresql" in run["databases"]]
    # The fixtures on both databases are found at all; else the checks below pass idly.
    assert len(postgresql) > 20
    unmarked = [run["nodeid"] for run in postgresql if not run["services"]]
    assert not unmarked, "run on PostgreSQL but not marked services:\n" + "\n".join(unmarked)
    quick = {run["nodeid"] for run in runs if not run["services"]}
    missing = [on_sqlite(run["nodeid"]) for run in postgresql
               if on_sqlite(run["nodeid"]) not in quick]
    assert not missing, "no SQLite run outside the services mark:\n" + "\n".join(missing)
