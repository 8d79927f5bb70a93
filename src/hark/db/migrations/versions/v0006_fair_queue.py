"""Fair scheduling between tenants: each key's highest allowed priority, and an index for
counting a tenant's queued and running jobs.

Revision ID: 0006
Revises: 0005
Created: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("max_priority", sa.Integer(), nullable=False,
                                   server_default="0"))
    op.create_index("ix_jobs_tenant_status", "jobs", ["tenant_id", "status"])


def downgrade() -> None:
    op.drop_index("ix_jobs_tenant_status", table_name="jobs")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("max_priority")
