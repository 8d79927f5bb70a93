"""Request and response bodies of the sign-in and people API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from hark.accounts.models import User


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginIn(Strict):
    email: str = Field(max_length=320)
    password: str = Field(max_length=1024)
    organisation: str | None = Field(default=None, max_length=64)
    # The page keeps the refresh token in an HttpOnly cookie; programs take it here.
    cookie: bool = False


class SetupIn(Strict):
    email: str = Field(max_length=320)
    password: str = Field(max_length=1024)
    name: str | None = Field(default=None, max_length=200)


class RefreshIn(Strict):
    refresh_token: str | None = Field(default=None, max_length=200)
    cookie: bool = False


class UserOut(BaseModel):
    id: str
    email: str
    name: str
    disabled: bool = False

    @classmethod
    def of(cls, user: User) -> UserOut:
        return cls(id=user.id, email=user.email, name=user.name,
                   disabled=user.disabled_at is not None)


class TokensOut(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int
    # Absent when it went into the cookie.
    refresh_token: str | None
    user: UserOut
    organisation: str
    role: str


class MembershipOut(BaseModel):
    organisation: str
    role: str


class MeOut(BaseModel):
    user: UserOut
    organisation: str
    role: str
    organisations: list[MembershipOut]


class SessionOut(BaseModel):
    id: str
    organisation: str
    started_at: datetime
    last_used_at: datetime
    user_agent: str | None
    address: str | None
    current: bool


class PasswordIn(Strict):
    current_password: str = Field(max_length=1024)
    new_password: str = Field(max_length=1024)


class ResetIn(Strict):
    token: str = Field(max_length=200)
    new_password: str = Field(max_length=1024)


class MemberOut(BaseModel):
    user: UserOut
    role: str


class NewMemberIn(Strict):
    email: str = Field(max_length=320)
    name: str | None = Field(default=None, max_length=200)
    role: str = "member"
    # None: the person sets one through a reset link (or signs in with SSO).
    password: str | None = Field(default=None, max_length=1024)


class MemberChangeIn(Strict):
    role: str | None = None
    disabled: bool | None = None


class ResetLinkOut(BaseModel):
    token: str
    url: str
    expires_in: int


class ErasureOut(BaseModel):
    """What erasing a person removed."""

    user: str
    organisations: list[str]
    jobs: int
    voice_profiles: int
    voice_samples: int
    api_keys: int
    audit_events_anonymised: int
    storage_prefixes: int
