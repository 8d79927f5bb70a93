"""Password hashing with argon2id (argon2-cffi's defaults: RFC 9106's low-memory
profile). Checking a password for an unknown account still spends one hash's time, so
timing does not tell which e-mail addresses have accounts."""

from __future__ import annotations

from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from hark.errors import OptionError

MIN_LENGTH = 10
MAX_LENGTH = 1024  # hashing cost grows with length: a bound keeps it a few milliseconds


@lru_cache(maxsize=1)
def _hasher() -> PasswordHasher:
    return PasswordHasher()


@lru_cache(maxsize=1)
def _decoy() -> str:
    return _hasher().hash("a password nobody has")


def check_new(password: str, field: str = "password") -> str:
    if not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        raise OptionError(f"a password has {MIN_LENGTH} to {MAX_LENGTH} characters",
                          field=field)
    return password


def hash_password(password: str, field: str = "password") -> str:
    return _hasher().hash(check_new(password, field))


def verify(stored: str | None, password: str) -> bool:
    """Whether `password` matches `stored` (None: no password, still one hash's work)."""
    if len(password) > MAX_LENGTH:
        return False
    try:
        return _hasher().verify(stored or _decoy(), password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    return _hasher().check_needs_rehash(stored)
