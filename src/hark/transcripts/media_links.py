"""Signed, expiring links to a job's recording, for players that cannot send a key.

An `<audio src>` cannot carry an `Authorization` header, and a key written into a URL
ends up in browser history, logs and `Referer` headers, and in any link someone is
tricked into opening. So a client asks, with its key, for a link
(`GET /api/v1/jobs/{id}/media/link`): the media URL with a `token` naming the job, its
tenant and the key that asked, signed by the server, valid for HARK_MEDIA_URL_SECONDS.
A link opens that one recording, until it expires or its key is revoked.

Signing is itsdangerous' timed serializer (HMAC-SHA1 over the payload and a
timestamp; a token from the future or older than the limit is refused). The secret is
HARK_MEDIA_SECRET, else one made once and kept in `$HARK_DATA_DIR/media_secret`, like
the webhook secret: API replicas that do not share a data directory need the setting,
with one value for all.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from itsdangerous import BadData, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy.orm import Session

from hark.config import Settings
from hark.errors import MediaLinkError
from hark.keys.models import ApiKey
from hark.stored_secret import stored_secret

SALT = "hark.media-link"
SECRET_FILE = "media_secret"


@dataclass(frozen=True)
class MediaGrant:
    """What a valid link allows: reading `job_id` of `tenant_id`, for as long as the
    key that asked for it (None: an anonymous local caller) is not revoked."""

    job_id: str
    tenant_id: str
    api_key_id: str | None


class MediaLinks:
    def __init__(self, secret: str, max_age: int) -> None:
        self.max_age = max_age
        self._serializer = URLSafeTimedSerializer(secret, salt=SALT)

    def sign(self, grant: MediaGrant) -> str:
        return self._serializer.dumps([grant.job_id, grant.tenant_id, grant.api_key_id])

    def verify(self, token: str, job_id: str) -> MediaGrant:
        """The grant a token carries, for the job in the URL; MediaLinkError otherwise."""
        try:
            payload = self._serializer.loads(token, max_age=self.max_age)
        except SignatureExpired:
            raise MediaLinkError("the media link has expired: ask for a new one",
                                 reason="expired") from None
        except BadData:
            raise MediaLinkError("the media link is not valid", reason="invalid") from None
        if not (isinstance(payload, list) and len(payload) == 3
                and all(isinstance(part, str) for part in payload[:2])
                and (payload[2] is None or isinstance(payload[2], str))):
            raise MediaLinkError("the media link is not valid", reason="invalid")
        if payload[0] != job_id:
            raise MediaLinkError("the media link is for another job", reason="other_job")
        return MediaGrant(job_id=payload[0], tenant_id=payload[1], api_key_id=payload[2])


def check_grant(session: Session, grant: MediaGrant, *, anonymous: bool) -> None:
    """Refuse a link whose key was revoked (or deleted) since it was made, or an
    anonymous link once the server no longer allows anonymous use."""
    if grant.api_key_id is None:
        if not anonymous:
            raise MediaLinkError("the media link was made without a key, which this "
                                 "server no longer allows", reason="anonymous")
        return
    key = session.get(ApiKey, grant.api_key_id)
    if key is None or key.revoked_at is not None or key.tenant_id != grant.tenant_id:
        raise MediaLinkError("the API key that made this media link was revoked",
                             reason="revoked")


def media_links(settings: Settings) -> MediaLinks:
    return _links(settings.media_secret or stored_secret(settings.data_dir, SECRET_FILE),
                  settings.media_url_seconds)


@lru_cache(maxsize=8)
def _links(secret: str, max_age: int) -> MediaLinks:
    return MediaLinks(secret, max_age)
