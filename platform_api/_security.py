"""Password hashing (argon2) and JWT access/refresh tokens (HS256 with the settings' secret).

Every token carries a *password stamp* (claim ``pwv``): a keyed digest of the account's password hash when the
token was issued. Changing the password (new hash) or erasing the account (no hash) changes the stamp, so every
token issued before is refused (:func:`check_password_stamp`) — the sessions end without a token table. The
check costs one HMAC on the user row that authentication loads anyway.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from learnloop.errors import PermissionDenied
from learnloop.settings import Settings

# OWASP's argon2id minimum (19 MiB, t=2, p=1): ~25 ms here, instead of ~0.5 s with the library default.
_hasher = PasswordHasher(time_cost=2, memory_cost=19_456, parallelism=1)


class TokenType(StrEnum):
    access = "access"
    refresh = "refresh"


class Unauthenticated(PermissionDenied):
    """No valid credentials (mapped to 401 rather than 403)."""


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password: str, password_hash: str | None) -> bool:
    if not password_hash:
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def password_stamp(settings: Settings, password_hash: str | None) -> str:
    """A short keyed digest of ``password_hash``: changes with every new password, reveals nothing about it."""
    key = settings.secret_key.get_secret_value().encode()
    return hmac.new(key, f"password-stamp:{password_hash or ''}".encode(), hashlib.sha256).hexdigest()[:32]


def check_password_stamp(*, settings: Settings, claims: dict[str, Any], password_hash: str | None) -> None:
    """Refuse a token issued before the account's password last changed (or before it was erased)."""
    stamp = claims.get("pwv")
    if not isinstance(stamp, str) or not hmac.compare_digest(stamp, password_stamp(settings, password_hash)):
        raise Unauthenticated("This session ended when the account's password changed; log in again with "
                              "POST /api/v1/auth/login")


def issue_token(*, settings: Settings, user_id: uuid.UUID, token_type: TokenType, password_hash: str | None,
                roles: list[str] | None = None, permissions: list[str] | None = None) -> tuple[str, datetime]:
    now = datetime.now(UTC)
    lifetime = (timedelta(minutes=settings.access_token_minutes) if token_type is TokenType.access
                else timedelta(days=settings.refresh_token_days))
    expires = now + lifetime
    claims: dict[str, Any] = {"sub": str(user_id), "user_id": str(user_id), "type": token_type.value,
                              "iat": now, "exp": expires, "jti": uuid.uuid4().hex,
                              "pwv": password_stamp(settings, password_hash)}
    if token_type is TokenType.access:
        claims["roles"] = roles or []
        claims["permissions"] = permissions or []
    token = jwt.encode(claims, settings.secret_key.get_secret_value(), algorithm=settings.jwt_algorithm)
    return token, expires


def decode_token(*, settings: Settings, token: str, expected: TokenType) -> dict[str, Any]:
    try:
        claims = jwt.decode(token, settings.secret_key.get_secret_value(), algorithms=[settings.jwt_algorithm],
                            options={"require": ["exp", "sub", "type"]})
    except jwt.ExpiredSignatureError as exc:
        raise Unauthenticated("The token has expired; log in again or use POST /api/v1/auth/refresh") from exc
    except jwt.PyJWTError as exc:
        raise Unauthenticated("The token is not valid; log in with POST /api/v1/auth/login") from exc
    if claims.get("type") != expected.value:
        raise Unauthenticated(f"Expected a {expected.value} token, got a {claims.get('type')} token")
    return claims
