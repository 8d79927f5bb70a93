"""The app of the audit log tests, on SQLite and on PostgreSQL, and ways to read what
it recorded.

    svc = audit_service_fixture("audit")     # in a test module: two apps, one per database
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from hark.audit.models import AuditEvent
from hark.keys.service import authenticate
from tests.support.service import API, Service, bearer, both_databases_fixture

AUDIT = f"{API}/audit"
# The tenant whose keys may read the audit log; `local` (anonymous callers) may not.
OPERATOR_TENANT = "ops"


def audit_service_fixture(name: str) -> Any:
    """A module's `svc` fixture: the app without workers (jobs stay queued, no model is
    loaded) with the operator tenant `ops`, once on SQLite and once on PostgreSQL."""
    return both_databases_fixture(name, workers=False, operator_tenants=[OPERATOR_TENANT])


def key_id(svc: Service, secret: str) -> str:
    with svc.state.db.session() as session:
        key = authenticate(session, secret)
        assert key is not None
        return key.id


def events_about(svc: Service, target_id: str) -> list[AuditEvent]:
    """The stored events of one target, oldest first (read from the table, not the API)."""
    with svc.state.db.session() as session:
        return list(session.scalars(
            sa.select(AuditEvent).where(AuditEvent.target_id == target_id)
            .order_by(AuditEvent.created_at, AuditEvent.id)))


def actions_about(svc: Service, target_id: str) -> list[str]:
    return [event.action for event in events_about(svc, target_id)]


def audit_page(svc: Service, secret: str, **params: Any) -> dict[str, Any]:
    response = svc.client.get(AUDIT, params=params, headers=bearer(secret))
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


def every_page(svc: Service, secret: str, **params: Any) -> list[dict[str, Any]]:
    """Every event the filters match, newest first, following the cursor."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        page = audit_page(svc, secret, **params, **({"cursor": cursor} if cursor else {}))
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items
