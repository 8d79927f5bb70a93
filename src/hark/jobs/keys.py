"""Where a job's files live in storage."""

from __future__ import annotations

RESULT_PREFIX = "results"


def media_key(job_id: str) -> str:
    """The recording, as received or fetched."""
    return f"media/{job_id}/source"


def result_key(job_id: str, attempt: int) -> str:
    """Each attempt writes its own object, so a losing attempt can remove what it wrote
    without touching the winner's."""
    return f"{RESULT_PREFIX}/{job_id}/transcript-{attempt}.json"


def results_prefix(job_id: str) -> str:
    return f"{RESULT_PREFIX}/{job_id}"
