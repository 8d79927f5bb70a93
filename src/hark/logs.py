"""Structured logs: one JSON object per line on stderr, from structlog and stdlib alike.

`configure_logging` points structlog at the standard library and puts a single
`structlog.stdlib.ProcessorFormatter` handler on the root logger, so lines from
uvicorn, SQLAlchemy, warnings and `logging.getLogger("hark...")` get the same keys
as structlog events: `timestamp` (ISO 8601, UTC), `level`, `event`, `logger`, and
`request_id` while a request is being handled (bound by the API's request-id
middleware). Servers, workers and the CLI all log through it.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any, Literal

import structlog
from structlog.typing import FilteringBoundLogger

LogFormat = Literal["auto", "json", "console"]

# Loggers that install their own handlers (uvicorn's default config does) would print
# a second, non-JSON copy of each line; they are made to propagate to the root instead.
_ROUTED_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")


# One lock around every write to stderr, from structlog and from the stdlib handler, so
# lines from different threads never interleave.
_WRITE_LOCK = threading.RLock()
# The configured level; read by the access log to skip building lines nobody wants.
_min_level = logging.INFO


def _write_line(line: str) -> None:
    with _WRITE_LOCK:
        stream = sys.stderr  # looked up per line: stderr may be replaced (pytest, daemons)
        stream.write(line + "\n")
        stream.flush()


class _StderrLogger:
    """structlog's output: the rendered line goes straight to stderr.

    structlog events do not go through the stdlib logging machinery (record creation,
    caller lookup, handler chain): that costs about three times as much per line, and
    the access log writes one line per request.
    """

    __slots__ = ("name",)

    def __init__(self, name: str = "") -> None:
        self.name = name  # read by add_logger_name

    def msg(self, message: str) -> None:
        _write_line(message)

    log = debug = info = warning = warn = error = critical = exception = fatal = msg


def _logger_factory(*args: Any) -> _StderrLogger:
    return _StderrLogger(str(args[0]) if args else "")


class _StderrHandler(logging.Handler):
    """The root handler for stdlib records: formats with structlog, writes to stderr."""

    _hark_handler = True

    def emit(self, record: logging.LogRecord) -> None:
        try:
            _write_line(self.format(record))
        except Exception:
            self.handleError(record)


def _shared_processors() -> list[Any]:
    # Run for structlog events and for stdlib records alike (as `foreign_pre_chain`).
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
    ]


def _parse_level(level: str | int) -> int:
    if isinstance(level, int):
        return level
    value = logging.getLevelName(level.strip().upper())
    if not isinstance(value, int):
        raise ValueError(f"unknown log level {level!r}")
    return value


def configure_logging(level: str | int = "INFO", fmt: LogFormat = "auto") -> None:
    """Send structlog events and stdlib records to stderr as one kind of line.

    `auto` writes human-readable lines when stderr is a terminal (a person is
    watching) and JSON otherwise (a log collector is). Idempotent: calling it again
    replaces the handler it installed before (and applies the new level and format)
    instead of adding a second one.
    """
    global _min_level
    numeric_level = _parse_level(level)
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    if fmt == "json":
        renderer: Any = structlog.processors.JSONRenderer()
    elif fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    else:
        raise ValueError(f"unknown log format {fmt!r} (auto, json or console)")

    shared = _shared_processors()
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        # Events below the level are dropped before any processor runs.
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=_logger_factory,
        # Not cached: a logger bound before a reconfiguration (module-level loggers, the
        # access log) must follow the new level and format. Resolving costs ~1 µs.
        cache_logger_on_first_use=False,
    )

    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = _StderrHandler()
    handler.setFormatter(formatter)

    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_hark_handler", False):
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric_level)
    for name in _ROUTED_LOGGERS:
        routed = logging.getLogger(name)
        routed.handlers.clear()
        routed.propagate = True
        routed.setLevel(logging.NOTSET)
    # The API's access-log middleware is the access log. uvicorn's own would repeat every request
    # (probes included, at info), and the routing above undoes uvicorn's
    # access_log=False when this runs after uvicorn configured itself (at app startup).
    logging.getLogger("uvicorn.access").disabled = True
    # Alembic narrates each step of every start ("Context impl SQLiteImpl."); Hark logs
    # one line when a migration actually ran.
    logging.getLogger("alembic").setLevel(max(numeric_level, logging.WARNING))
    # warnings.warn output would otherwise be a plain multi-line text on stderr.
    logging.captureWarnings(True)
    _min_level = numeric_level


def get_logger(name: str) -> FilteringBoundLogger:
    """A structlog logger named like a stdlib one (`hark.jobs.service`).

    Safe to create at import time, before `configure_logging` runs.
    """
    logger: FilteringBoundLogger = structlog.get_logger(name)
    return logger


def min_level() -> int:
    """The configured level, for callers that skip building lines nobody wants."""
    return _min_level
