"""Which queue a job goes to: one per model size class (see `engines.sizes`)."""

from __future__ import annotations

from hark.pipeline.engines.sizes import LARGE, MEDIUM, SMALL, size_class

QUEUES: tuple[str, ...] = (SMALL, MEDIUM, LARGE)

__all__ = ["QUEUES", "parse_queues", "size_class", "time_limit"]


def parse_queues(value: str | None) -> tuple[str, ...]:
    """`small,large` → ("small", "large"); empty or None → every queue."""
    if not value:
        return QUEUES
    names = tuple(dict.fromkeys(q.strip().lower() for q in value.split(",") if q.strip()))
    unknown = [q for q in names if q not in QUEUES]
    if unknown:
        raise ValueError(f"unknown queue {unknown[0]!r}; queues are {', '.join(QUEUES)}")
    return names or QUEUES


# Seconds of processing allowed per second of audio, by size class, before a job is
# stopped as stuck; CPU decoding of a large model runs near real time, so it gets most.
TIME_PER_AUDIO_SECOND = {SMALL: 1.0, MEDIUM: 2.0, LARGE: 4.0}
MIN_TIME_LIMIT_SECONDS = 300.0


def time_limit(queue: str, duration: float | None) -> float:
    """How long a job of `duration` seconds of audio may run (fetching included)."""
    factor = TIME_PER_AUDIO_SECOND.get(queue, 4.0)
    return max(MIN_TIME_LIMIT_SECONDS, (duration or 0.0) * factor + 120.0)
