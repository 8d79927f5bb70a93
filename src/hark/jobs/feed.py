"""The tenant's job feed: changes to a tenant's job list, for clients that show the list.

Events travel on the same bus as each job's own events, on one channel per tenant, so
in scaled mode a subscriber on any API replica hears of jobs submitted through any
other (Redis pub/sub carries the channel like a job's):

- `{"type": "created", "job_id", "job"}`: a job was submitted (upload, URL, upload
  slot, retry, OpenAI-compatible request); `job` is the API's job shape as queued.
- `{"type": "purged", "job_id", "job"}`: `DELETE ?purge=true` removed its recording,
  results and edits. The job itself stays listed, with `purged: true`.

A job's progress and outcome stay on its own stream (`/api/v1/jobs/{id}/events|ws`).
The request that made the change publishes after its commit, so a subscriber that
hears of a job can already read it.
"""

from __future__ import annotations

from typing import Any, Literal

from hark.events.base import EventBus

Kind = Literal["created", "purged"]
CREATED: Kind = "created"
PURGED: Kind = "purged"


def channel(tenant_id: str) -> str:
    # Job channels are UUIDs, and the per-job endpoints take one path segment, which
    # cannot hold a '/': no job stream can be pointed at a tenant's channel.
    return f"tenant/{tenant_id}"


def publish(bus: EventBus, tenant_id: str, kind: Kind, job: dict[str, Any]) -> None:
    """Announce `job` (the API's job dict) to the tenant's feed subscribers."""
    bus.publish(channel(tenant_id), {"type": kind, "job_id": job["id"], "job": job})
