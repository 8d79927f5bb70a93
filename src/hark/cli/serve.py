"""`hark serve`: the API and its worker pool in one process tree."""

from __future__ import annotations

import contextlib
import signal
import socket
from types import FrameType
from typing import Annotated

import typer

from hark.cli.console import err, fail
from hark.config import get_settings
from hark.errors import HarkError


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind (HARK_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (HARK_PORT).")] = None,
    workers: Annotated[int | None, typer.Option(
        "--workers", "-w", min=1, help="Worker processes (HARK_WORKERS; default: CPU cores).")
    ] = None,
    no_worker: Annotated[bool, typer.Option(
        "--no-worker", help="Serve the API only; jobs wait for workers elsewhere.")] = False,
    queues: Annotated[str | None, typer.Option(
        help="Queues the workers take jobs from, e.g. small,medium (default: all).")] = None,
) -> None:
    """Run the HTTP API (OpenAPI docs at /docs) with a pool of job workers."""
    import uvicorn

    from hark.api.app import create_app

    updates = {k: v for k, v in (("host", host), ("port", port), ("workers", workers))
               if v is not None}
    settings = get_settings().model_copy(update=updates)
    from hark.jobs.routing import parse_queues

    try:
        chosen = parse_queues(queues)
    except ValueError as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(2) from exc
    try:
        app = create_app(settings, workers=not no_worker, queues=chosen)
    except HarkError as exc:
        fail(exc)
    class Server(uvicorn.Server):
        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            # Event streams never end by themselves: end them first, or the graceful
            # shutdown waits out its whole grace period on every open one.
            state = getattr(app.state, "hark", None)
            if state is not None:
                state.bus.end_subscriptions()
            await super().shutdown(sockets)

    server = Server(uvicorn.Config(app, host=settings.host, port=settings.port,
                                   access_log=False, log_config=None,
                                   timeout_graceful_shutdown=10, ws="websockets-sansio"))
    # uvicorn restores the handlers it found and raises a caught SIGINT or SIGTERM again
    # once it has shut down gracefully. Found the defaults, that second signal would kill
    # the process before interpreter exit releases the worker pool's semaphores
    # (multiprocessing then warns of leaked ones) or raise KeyboardInterrupt through the
    # event loop; found these, it ends the process the normal way.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _exit_cleanly)
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    if not server.started:
        raise typer.Exit(3)  # uvicorn has logged why (the port is taken, say)
