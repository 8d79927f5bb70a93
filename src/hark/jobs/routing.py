"""Which queue a job goes to: one per model size class (see `engines.sizes`)."""

from __future__ import annotations

from hark.pipeline.engines.sizes import LARGE, MEDIUM, SMALL, size_class

QUEUES: tuple[str, ...] = (SMALL, MEDIUM, LARGE)

__all__ = ["QUEUES", "parse_queues", "size_class"]


def parse_queues(value: str | None) -> tuple[str, ...]:
    """`small,large` → ("small", "large"); empty or None → every queue."""
    if not value:
        return QUEUES
    names = tuple(dict.fromkeys(q.strip().lower() for q in value.split(",") if q.strip()))
    unknown = [q for q in names if q not in QUEUES]
    if unknown:
        raise ValueError(f"unknown queue {unknown[0]!r}; queues are {', '.join(QUEUES)}")
    return names or QUEUES
