"""Table: an API key, stored as a hash; the key itself is shown once at creation."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from hark.db.base import Base, IdMixin, TenantMixin, TimestampMixin
from hark.db.types import UTCDateTime

# What keys made before scopes existed could do: everything but the admin routes.
LEGACY_SCOPES = "jobs:read jobs:write live speakers:write"


class ApiKey(IdMixin, TenantMixin, TimestampMixin, Base):
    __tablename__ = "api_keys"

    name: Mapped[str] = mapped_column(String(200))
    # The first characters of the key, so a person can tell keys apart in listings.
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # Signs this key's webhooks; the receiver holds the same secret.
    webhook_secret: Mapped[str] = mapped_column(String(128))
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The highest job priority this key may ask for (0: normal); above it is refused.
    max_priority: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # This key's request rate, such as "120/minute" (None: HARK_RATE_LIMIT).
    rate_limit: Mapped[str | None] = mapped_column(String(64))
    # What the key may do: scopes separated by spaces (hark.accounts.policy.SCOPES).
    scopes: Mapped[str] = mapped_column(
        String(200), default=LEGACY_SCOPES, server_default=LEGACY_SCOPES)
    # The person the key acts for (held to their role too, and gone with them); None
    # for a service account of the organisation.
    user_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("users.id", ondelete="CASCADE"), index=True)

    @property
    def scope_set(self) -> frozenset[str]:
        return frozenset(self.scopes.split())
