"""`hark worker`: a Celery worker for scaled mode (HARK_BROKER_URL)."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from hark.cli.console import err, fail
from hark.config import get_settings
from hark.errors import HarkError


def worker(
    queues: Annotated[str | None, typer.Option(
        help="Queues to take jobs from: small, medium, large, comma-separated (default: all)."
    )] = None,
    concurrency: Annotated[int | None, typer.Option(
        "--concurrency", "-c", min=1,
        help="Jobs run at once, one process each (default: HARK_WORKERS, else CPU cores).")
    ] = None,
    metrics_port: Annotated[int | None, typer.Option(
        "--metrics-port", min=0, max=65535,
        help="Port of this worker's Prometheus /metrics; 0 turns it off "
             "(default: HARK_WORKER_METRICS_PORT).")
    ] = None,
) -> None:
    """Run jobs from the broker's queues until stopped (SIGTERM: finish the running jobs)."""
    from hark.db import open_database
    from hark.jobs.routing import parse_queues
    from hark.logs import configure_logging
    from hark.workers.celery_app import make_celery, queue_name

    settings = get_settings()
    if not settings.broker_url:
        err.print("error: hark worker needs a broker: set HARK_BROKER_URL "
                  "(e.g. redis://localhost:6379/0)", markup=False)
        raise typer.Exit(2)
    try:
        chosen = parse_queues(queues)
    except ValueError as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(2) from exc
    processes = concurrency or settings.worker_count
    if not settings.asr_processes:
        # Each job process gets its share of the cores for pocketsphinx's decoders.
        os.environ["HARK_ASR_PROCESSES"] = str(max(1, (os.cpu_count() or 1) // processes))
        get_settings.cache_clear()
        settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    port = settings.worker_metrics_port if metrics_port is None else metrics_port
    if port:
        _serve_metrics(port)
    try:
        open_database(settings.database).dispose()  # migrations, before any fork
    except HarkError as exc:
        fail(exc)
    # Logging is set up (JSON to stderr): a receiver of setup_logging keeps Celery from
    # configuring it again and from redirecting sys.stdout/stderr to a logger, which
    # would swallow every line our handler writes to stderr (it writes to the proxy,
    # the proxy logs to our handler, and its recursion guard drops the line).
    from celery import signals

    signals.setup_logging.connect(_logging_is_configured, weak=False)
    signals.worker_process_init.connect(_allow_child_processes, weak=False)
    app = make_celery(settings)
    names = ",".join(queue_name(q) for q in chosen)
    app.worker_main(["worker", "--queues", names, "--concurrency", str(processes),
                     "--prefetch-multiplier", "1", "--pool", "prefork", "--without-gossip",
                     "--without-mingle", "--hostname", f"hark-{'-'.join(chosen)}@%h",
                     "--loglevel", settings.log_level.upper()])


def _logging_is_configured(**_: object) -> None:
    """Celery's setup_logging signal: hark configured logging already.

    Only billiard's pool logger ("a pool process exited with signal 9") needs a nudge:
    it does not propagate, so its errors would reach stderr as plain text, not JSON.
    Like Celery, keep it to errors.
    """
    import logging

    from billiard.util import get_logger as pool_logger

    logger = pool_logger()
    logger.propagate = True
    logger.setLevel(logging.ERROR)


def _allow_child_processes(**_: object) -> None:
    """In each pool process: let it start processes of its own.

    Celery's (billiard's) pool processes install billiard's process record as the
    standard library's current process: it is daemonic, so multiprocessing refuses it
    children ("daemonic processes are not allowed to have children"), and its authkey
    cannot be pickled for a spawned child. A job's pocketsphinx decoders are such
    children. Clearing the flag and re-wrapping the key in the standard library's
    AuthenticationString fixes both. The decoders watch their parent and exit with it,
    which is what the daemon flag was for.
    """
    import multiprocessing
    import multiprocessing.process as mp_process

    config = multiprocessing.current_process()._config  # type: ignore[attr-defined]
    config["daemon"] = False
    config["authkey"] = mp_process.AuthenticationString(  # type: ignore[attr-defined]
        bytes(config["authkey"]))


METRICS_DIR_PREFIX = "hark-worker-metrics-"


def _remove_orphaned_metrics() -> None:
    """Remove the metrics folders of workers that were killed (they name their pid)."""
    for folder in Path(tempfile.gettempdir()).glob(f"{METRICS_DIR_PREFIX}*-*"):
        pid = folder.name.removeprefix(METRICS_DIR_PREFIX).partition("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _serve_metrics(port: int) -> None:
    """Prometheus `/metrics` for this worker and its pool processes, on `port`.

    Multiprocess mode must be chosen before prometheus_client is first imported, so
    the directory is set here, before anything loads the metrics module.
    """
    _remove_orphaned_metrics()
    directory = tempfile.mkdtemp(prefix=f"{METRICS_DIR_PREFIX}{os.getpid()}-")
    # The pool processes' sample files are of no use once the worker is gone.
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    try:
        start_http_server(port, registry=registry)
    except OSError as exc:
        err.print(f"error: cannot serve worker metrics on port {port}: {exc.strerror}; "
                  "give each worker on this host its own port (--metrics-port or "
                  "HARK_WORKER_METRICS_PORT), or 0 to turn them off", markup=False)
        raise typer.Exit(2) from exc
