"""Single sign-on with an OpenID Connect provider: the authorization-code flow with PKCE
(S256), a state that ties the provider's answer to the browser that asked, a nonce that
ties the ID token to this sign-in, and the ID token checked against the provider's
published keys (signature, issuer, audience, expiry, nonce).

What passes between the start and the callback (state, nonce, code verifier) rides in
a short-lived cookie signed with the server's auth secret, so no server-side store is
needed and any API replica can finish a sign-in another one started.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt
from itsdangerous import BadData, URLSafeTimedSerializer

from hark.config import Settings
from hark.errors import AuthenticationError, OptionError

FLOW_SECONDS = 600
_SALT = "hark.oidc-flow"
_ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"]


@dataclass(frozen=True)
class Flow:
    """One sign-in in progress: what the callback must find again."""

    state: str
    nonce: str
    verifier: str

    @classmethod
    def new(cls) -> Flow:
        return cls(secrets.token_urlsafe(24), secrets.token_urlsafe(24),
                   secrets.token_urlsafe(48))

    @property
    def challenge(self) -> str:
        digest = hashlib.sha256(self.verifier.encode()).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def seal(flow: Flow, secret: str) -> str:
    return URLSafeTimedSerializer(secret, salt=_SALT).dumps(
        [flow.state, flow.nonce, flow.verifier])


def unseal(sealed: str | None, secret: str) -> Flow:
    if not sealed:
        raise AuthenticationError("no sign-in was started from this browser; start again",
                                  reason="oidc_no_flow")
    try:
        state, nonce, verifier = URLSafeTimedSerializer(secret, salt=_SALT).loads(
            sealed, max_age=FLOW_SECONDS)
    except (BadData, ValueError, TypeError):
        raise AuthenticationError("the sign-in took too long or was tampered with; start "
                                  "again", reason="oidc_bad_flow") from None
    return Flow(str(state), str(nonce), str(verifier))


@dataclass(frozen=True)
class Identity:
    subject: str
    email: str
    name: str | None


class OidcProvider:
    def __init__(self, issuer: str, client_id: str, client_secret: str | None,
                 scopes: str) -> None:
        self.issuer = issuer.rstrip("/")
        self.client_id = client_id
        self.client_secret = client_secret
        self.scopes = scopes
        self._metadata: dict[str, Any] | None = None
        self._keys: jwt.PyJWKClient | None = None

    def metadata(self) -> dict[str, Any]:
        if self._metadata is None:
            try:
                answer = httpx.get(f"{self.issuer}/.well-known/openid-configuration",
                                   timeout=10)
                answer.raise_for_status()
                self._metadata = answer.json()
            except (httpx.HTTPError, ValueError) as exc:
                raise AuthenticationError(f"the sign-in provider cannot be reached: {exc}",
                                          reason="oidc_unreachable") from exc
        return self._metadata

    def authorize_url(self, redirect_uri: str, flow: Flow) -> str:
        query = {"response_type": "code", "client_id": self.client_id,
                 "redirect_uri": redirect_uri, "scope": self.scopes, "state": flow.state,
                 "nonce": flow.nonce, "code_challenge": flow.challenge,
                 "code_challenge_method": "S256"}
        return f"{self.metadata()['authorization_endpoint']}?{urlencode(query)}"

    def identity(self, code: str, redirect_uri: str, flow: Flow) -> Identity:
        """Exchange the code and check the ID token; who signed in."""
        form = {"grant_type": "authorization_code", "code": code,
                "redirect_uri": redirect_uri, "code_verifier": flow.verifier,
                "client_id": self.client_id}
        auth = (self.client_id, self.client_secret) if self.client_secret else None
        try:
            answer = httpx.post(self.metadata()["token_endpoint"], data=form, auth=auth,
                                timeout=10)
        except httpx.HTTPError as exc:
            raise AuthenticationError(f"the sign-in provider cannot be reached: {exc}",
                                      reason="oidc_unreachable") from exc
        if answer.status_code != 200:
            raise AuthenticationError("the sign-in provider refused the code (used, expired "
                                      "or not for this server)", reason="oidc_code_refused")
        id_token = answer.json().get("id_token")
        if not isinstance(id_token, str):
            raise AuthenticationError("the sign-in provider sent no ID token",
                                      reason="oidc_no_id_token")
        claims = self._verify(id_token, flow.nonce)
        email = claims.get("email")
        if not isinstance(email, str) or claims.get("email_verified") is False:
            raise AuthenticationError("the sign-in provider gave no verified e-mail address",
                                      reason="oidc_no_email")
        name = claims.get("name")
        return Identity(str(claims["sub"]), email, name if isinstance(name, str) else None)

    def _signing_key(self, id_token: str) -> jwt.PyJWK:
        """The provider's key named by the token; a provider with one key may omit the
        name."""
        assert self._keys is not None
        kid = jwt.get_unverified_header(id_token).get("kid")
        if kid is not None:
            return self._keys.get_signing_key(kid)
        keys = self._keys.get_signing_keys()
        if len(keys) != 1:
            raise jwt.InvalidTokenError("the ID token names no key, and the provider has "
                                        f"{len(keys)}")
        return keys[0]

    def _verify(self, id_token: str, nonce: str) -> dict[str, Any]:
        if self._keys is None:
            self._keys = jwt.PyJWKClient(self.metadata()["jwks_uri"])
        try:
            key = self._signing_key(id_token)
            claims: dict[str, Any] = jwt.decode(
                id_token, key.key, algorithms=_ALGORITHMS, audience=self.client_id,
                issuer=self.metadata().get("issuer", self.issuer),
                options={"require": ["exp", "iat", "sub", "iss", "aud"]})
        except jwt.PyJWTError as exc:
            raise AuthenticationError(f"the ID token is not valid: {exc}",
                                      reason="oidc_bad_id_token") from exc
        if claims.get("nonce") != nonce:
            raise AuthenticationError("the ID token is not from this sign-in",
                                      reason="oidc_bad_nonce")
        return claims


def provider(settings: Settings) -> OidcProvider | None:
    """The configured provider (None: SSO is off)."""
    if not settings.oidc_issuer:
        return None
    if not settings.oidc_client_id:
        raise OptionError("HARK_OIDC_ISSUER needs HARK_OIDC_CLIENT_ID", field="oidc_client_id")
    return _provider(settings.oidc_issuer, settings.oidc_client_id, settings.oidc_client_secret,
                     settings.oidc_scopes)


@lru_cache(maxsize=4)
def _provider(issuer: str, client_id: str, secret: str | None, scopes: str) -> OidcProvider:
    return OidcProvider(issuer, client_id, secret, scopes)
