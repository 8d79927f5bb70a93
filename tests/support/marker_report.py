"""A pytest plugin that writes down, for every collected test, which database it runs on
and whether it is marked `services`, so that tests/test_markers.py can check the marks of
the whole suite from a collection of its own.

    HARK_MARKER_REPORT=runs.json pytest --collect-only -n 0 -p tests.support.marker_report

Without HARK_MARKER_REPORT the plugin does nothing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

REPORT_VARIABLE = "HARK_MARKER_REPORT"
# The parameter values of tests that run once per database (`DATABASES` in test_db.py).
DATABASE_KINDS = frozenset({"sqlite", "postgresql"})


def database_kinds(item: pytest.Item) -> list[str]:
    """The database kinds among the item's parameter values (fixture params included)."""
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return []
    return sorted(value for value in callspec.params.values()
                  if isinstance(value, str) and value in DATABASE_KINDS)


def pytest_collection_finish(session: pytest.Session) -> None:
    target = os.environ.get(REPORT_VARIABLE)
    if not target:
        return
    runs: list[dict[str, Any]] = [
        {"nodeid": item.nodeid, "databases": database_kinds(item),
         "services": item.get_closest_marker("services") is not None}
        for item in session.items]
    Path(target).write_text(json.dumps(runs), encoding="utf-8")
