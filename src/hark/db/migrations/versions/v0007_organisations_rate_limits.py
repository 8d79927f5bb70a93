"""Organisations with quotas and retention (one per tenant already in use), and a
request rate per key.

Revision ID: 0007
Revises: 0006
Created: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None


def upgrade() -> None:
    organisations = op.create_table(
        "organisations",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("quota_audio_seconds_per_month", sa.Float(), nullable=True),
        sa.Column("quota_concurrent_jobs", sa.Integer(), nullable=True),
        sa.Column("quota_storage_bytes", sa.BigInteger(), nullable=True),
        sa.Column("quota_live_streams", sa.Integer(), nullable=True),
        sa.Column("retention_media_days", sa.Integer(), nullable=True),
        sa.Column("retention_results_days", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_organisations")),
    )
    # Every tenant that owns something today becomes an organisation of that name.
    bind = op.get_bind()
    tenants = {"local"}
    for table in ("api_keys", "jobs", "speaker_profiles"):
        tenants |= {row[0] for row in bind.execute(
            sa.text(f"SELECT DISTINCT tenant_id FROM {table}"))}
    op.bulk_insert(organisations, [{"id": t, "name": t} for t in sorted(tenants)])
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("rate_limit", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("rate_limit")
    op.drop_table("organisations")
