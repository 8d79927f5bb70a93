"""What the browser tests share: where Chromium is, and waiting on the page."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tests.support.common import wait_for

CHROMIUM = Path(os.environ.get("HARK_TEST_CHROMIUM", "/usr/bin/chromium"))
TIMEOUT_MS = 30_000


def wait_until(page: Any, function: str, arg: Any = None,
               timeout: float = TIMEOUT_MS / 1000) -> None:
    """Poll a JavaScript function in the page until it returns something truthy.

    Playwright's own `wait_for_function` re-evaluates its predicate with `eval` from
    animation-frame callbacks, which the page's Content-Security-Policy (no
    'unsafe-eval') rightly refuses; `evaluate` calls are compiled by the DevTools
    protocol instead, so polling from here tests the page under its real policy.
    """
    wait_for(lambda: page.evaluate(function, arg), timeout, message=f"waiting for {function}")
