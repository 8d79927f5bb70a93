"""A background thread that runs one pass of some housekeeping every few seconds."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("hark.periodic")


class Periodic:
    """Calls `tick` every `interval` seconds until stopped. A failing pass is logged
    and the next one runs as usual: the database or broker may just be away."""

    def __init__(self, name: str, interval: float, tick: Callable[[], None]) -> None:
        self.interval = interval
        self.tick = tick
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.tick()
            except Exception:
                log.exception("%s: pass failed; trying again later", self._thread.name)
