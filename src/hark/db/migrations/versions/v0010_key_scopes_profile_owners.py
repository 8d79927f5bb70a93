"""API keys get scopes and may belong to a person. Existing keys keep what they could
do before: every job, speaker and live route, none of the admin ones. Voice profiles
remember the person who enrolled them.

Revision ID: 0010
Revises: 0009
Created: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None

LEGACY_SCOPES = "jobs:read jobs:write live speakers:write"


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as table:
        table.add_column(sa.Column("scopes", sa.String(200), nullable=False,
                                   server_default=LEGACY_SCOPES))
        table.add_column(sa.Column("user_id", sa.String(36), nullable=True))
        table.create_foreign_key(op.f("fk_api_keys_user_id_users"), "users", ["user_id"],
                                 ["id"], ondelete="CASCADE")
        table.create_index(op.f("ix_api_keys_user_id"), ["user_id"])
    with op.batch_alter_table("speaker_profiles") as table:
        table.add_column(sa.Column("created_by", sa.String(36), nullable=True))
        table.create_index(op.f("ix_speaker_profiles_created_by"), ["created_by"])


def downgrade() -> None:
    with op.batch_alter_table("speaker_profiles") as table:
        table.drop_index(op.f("ix_speaker_profiles_created_by"))
        table.drop_column("created_by")
    with op.batch_alter_table("api_keys") as table:
        table.drop_index(op.f("ix_api_keys_user_id"))
        table.drop_constraint(op.f("fk_api_keys_user_id_users"), type_="foreignkey")
        table.drop_column("user_id")
        table.drop_column("scopes")
