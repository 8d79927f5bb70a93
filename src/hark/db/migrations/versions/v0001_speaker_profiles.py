"""Speaker profiles and their voice samples.

Revision ID: 0001
Revises:
Created: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None


def upgrade() -> None:
    op.create_table(
        "speaker_profiles",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("tenant_id", sa.String(64), server_default="local", nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("embedder", sa.String(64), nullable=False),
        sa.Column("dimension", sa.Integer(), nullable=False),
        sa.Column("centroid", sa.LargeBinary(), nullable=False),
        sa.Column("sample_count", sa.Integer(), nullable=False),
        sa.Column("speech_seconds", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_speaker_profiles")),
        sa.UniqueConstraint("tenant_id", "name",
                            name=op.f("uq_speaker_profiles_tenant_id_name")),
    )
    op.create_table(
        "voice_samples",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("profile_id", sa.String(36), nullable=False),
        sa.Column("embedding", sa.LargeBinary(), nullable=False),
        sa.Column("speech_seconds", sa.Float(), nullable=False),
        sa.Column("source", sa.String(255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.ForeignKeyConstraint(["profile_id"], ["speaker_profiles.id"],
                                name=op.f("fk_voice_samples_profile_id_speaker_profiles"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_voice_samples")),
    )
    op.create_index(op.f("ix_voice_samples_profile_id"), "voice_samples", ["profile_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_voice_samples_profile_id"), table_name="voice_samples")
    op.drop_table("voice_samples")
    op.drop_table("speaker_profiles")
