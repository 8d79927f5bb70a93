"""Worker ids (`host/pid/slot`) and telling whether the worker behind one has died."""

from __future__ import annotations

import os
import socket


def worker_id(slot: int | str) -> str:
    return f"{socket.gethostname()}/{os.getpid()}/{slot}"


def parse_worker_id(value: str) -> tuple[str, int] | None:
    """(host, pid) of a worker id, or None for ids of another shape."""
    parts = value.split("/")
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    return parts[0], int(parts[1])


def pid_alive(pid: int) -> bool:
    """Whether the process runs; a zombie (dead, not yet reaped) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            # The state follows the parenthesised command name, which may hold spaces.
            state = stat.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in (b"Z", b"X")


def owner_gone(value: str) -> bool:
    """True when the worker ran on this host and its process no longer exists.

    A worker on another host cannot be checked from here: its lease decides.
    """
    owner = parse_worker_id(value)
    return owner is not None and owner[0] == socket.gethostname() and not pid_alive(owner[1])
