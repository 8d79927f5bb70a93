"""Models are loaded once per process and kept in a small, self-emptying cache.

Loading a Whisper model or starting a decoder pool takes seconds, so every caller in
a process shares one copy. The cache is bounded (least recently used goes first)
and unloads models nobody has used for `idle_seconds`; a model in use is never
unloaded under its user. Keys for which `exclusive(key)` is true (large models) are
kept one at a time: loading one first unloads the others that are idle.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar


class Closeable(Protocol):
    def close(self) -> None: ...


T = TypeVar("T", bound=Closeable)


@dataclass
class _Entry(Generic[T]):
    value: T
    last_used: float
    users: int = 0


class ModelCache(Generic[T]):
    def __init__(
        self, max_entries: int, idle_seconds: float,
        exclusive: Callable[[str], bool] | None = None,
    ) -> None:
        self.max_entries = max_entries
        self.exclusive = exclusive
        self.idle_seconds = idle_seconds
        self._entries: OrderedDict[str, _Entry[T]] = OrderedDict()
        self._lock = threading.RLock()
        self._load_locks: dict[str, threading.Lock] = {}
        self._sweeper: threading.Thread | None = None
        self.loads = 0

    def keys(self) -> list[str]:
        with self._lock:
            return list(self._entries)

    @contextmanager
    def use(self, key: str, load: Callable[[], T]) -> Iterator[T]:
        """Borrow the model under `key`, loading it first if needed."""
        entry = self._acquire(key, load)
        try:
            yield entry.value
        finally:
            with self._lock:
                entry.users -= 1
                entry.last_used = time.monotonic()
            self._evict_over_limit()

    def _acquire(self, key: str, load: Callable[[], T]) -> _Entry[T]:
        with self._lock:
            load_lock = self._load_locks.setdefault(key, threading.Lock())
        # One loader per key: a second caller waits rather than loading a second copy.
        with load_lock:
            with self._lock:
                entry = self._entries.get(key)
                if entry is not None:
                    entry.users += 1
                    entry.last_used = time.monotonic()
                    self._entries.move_to_end(key)
                    return entry
            self._evict_exclusive(key)
            value = load()
            with self._lock:
                self.loads += 1
                entry = _Entry(value, time.monotonic(), users=1)
                self._entries[key] = entry
                self._start_sweeper()
        self._evict_over_limit()
        return entry

    def _evict_over_limit(self) -> None:
        doomed: list[T] = []
        with self._lock:
            idle = [k for k, e in self._entries.items() if e.users == 0]
            while len(self._entries) > self.max_entries and idle:
                doomed.append(self._entries.pop(idle.pop(0)).value)
        for value in doomed:
            value.close()

    def _evict_exclusive(self, key: str) -> None:
        if self.exclusive is None or not self.exclusive(key):
            return
        doomed: list[T] = []
        with self._lock:
            for other in [k for k, e in self._entries.items()
                          if e.users == 0 and k != key and self.exclusive(k)]:
                doomed.append(self._entries.pop(other).value)
        for value in doomed:
            value.close()

    def sweep(self) -> int:
        """Unload every model idle for longer than `idle_seconds`; returns how many."""
        now = time.monotonic()
        doomed: list[T] = []
        with self._lock:
            for key in [
                k for k, e in self._entries.items()
                if e.users == 0 and now - e.last_used >= self.idle_seconds
            ]:
                doomed.append(self._entries.pop(key).value)
        for value in doomed:
            value.close()
        return len(doomed)

    def clear(self) -> None:
        with self._lock:
            values = [e.value for e in self._entries.values()]
            self._entries.clear()
        for value in values:
            value.close()

    def _start_sweeper(self) -> None:
        if self._sweeper is not None and self._sweeper.is_alive():
            return
        self._sweeper = threading.Thread(target=self._sweep_loop, name="hark-model-sweeper",
                                         daemon=True)
        self._sweeper.start()

    def _sweep_loop(self) -> None:
        interval = max(0.05, min(self.idle_seconds / 4, 30.0))
        while True:
            time.sleep(interval)
            self.sweep()
            with self._lock:
                if not self._entries:
                    self._sweeper = None
                    return
