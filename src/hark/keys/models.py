"""Table: an API key, stored as a hash; the key itself is shown once at creation."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from hark.db.base import Base, IdMixin, TenantMixin, TimestampMixin
from hark.db.types import UTCDateTime


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
