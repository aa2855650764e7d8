"""Signed tokens: JWT access and refresh tokens, and the digest a session keeps of a secret."""

import hashlib
import time
from datetime import datetime, timedelta
from typing import Any

import jwt

from .config import get_settings
from .models import MAX_ID, utcnow

ALGORITHM = "HS256"
# Replicas' clocks differ by a little: a token issued (`iat`) by one a few seconds ahead is
# not refused by another. (Expiry gets no such grace.)
CLOCK_SKEW_SECONDS = 5.0


def _issued_in_the_past(payload: dict[str, Any]) -> bool:
    issued = payload.get("iat")
    if issued is None:
        return True
    if not isinstance(issued, int | float) or isinstance(issued, bool):
        return False
    return issued <= time.time() + CLOCK_SKEW_SECONDS


def create_access_token(
    user_id: int, session_id: int, expires_delta: timedelta | None = None
) -> str:
    """A short-lived token for user `user_id`, good while session `session_id` lives."""
    settings = get_settings()
    if expires_delta is None:
        expires_delta = timedelta(minutes=settings.ACCESS_TOKEN_EXPIRE_MINUTES)
    now = utcnow()
    payload = {"sub": str(user_id), "sid": str(session_id), "iat": now, "exp": now + expires_delta}
    return jwt.encode(payload, settings.SECRET_KEY, algorithm=ALGORITHM)


def _id_claim(value: object) -> int | None:
    if not isinstance(value, str) or not (value.isascii() and value.isdigit()):
        return None
    number = int(value)
    return number if 1 <= number <= MAX_ID else None


# A client sends the same token with every request until it expires. Checking it again
# (base64, JSON, HMAC, claims) costs more than a query's worth of CPU, so tokens that
# passed are remembered with what they said, keyed by the key that signed them. The
# expiry is still checked on every request, and nothing is remembered of a token that
# failed: only tokens signed with our key get in, so no client can fill this. Whether the
# token's session still lives is never remembered: the query that loads the current user
# checks it on every request (auth/dependencies.py).
_VERIFIED_MAX = 4096
_verified: dict[tuple[str, str], tuple[int, int, float]] = {}


def read_access_token(token: str) -> tuple[int, int] | None:
    """(user id, session id) of a valid access token; None for any invalid or expired one."""
    key = get_settings().SECRET_KEY
    if (known := _verified.get((token, key))) is not None:
        user_id, session_id, expires = known
        return (user_id, session_id) if time.time() < expires else None
    try:
        # A refresh token carries an audience, which this refuses: it is no access token.
        payload = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            options={"require": ["exp", "sub", "sid"], "verify_iat": False},
        )
    except jwt.PyJWTError:
        return None
    if not _issued_in_the_past(payload):
        return None
    subject, session = _id_claim(payload["sub"]), _id_claim(payload["sid"])
    if subject is None or session is None:
        return None
    if len(_verified) >= _VERIFIED_MAX:
        del _verified[next(iter(_verified))]  # the oldest
    _verified[token, key] = (subject, session, float(payload["exp"]))
    return subject, session


# Refresh tokens are signed like access tokens, so that their session can be named without
# trusting the client, and carry a random `jti` of which the session stores only a hash:
# the token works while that hash is the session's current one.
REFRESH_AUDIENCE = "refresh"


def create_refresh_token(user_id: int, session_id: int, jti: str, expires: datetime) -> str:
    payload = {
        "sub": str(user_id),
        "sid": str(session_id),
        "jti": jti,
        "aud": REFRESH_AUDIENCE,
        "iat": utcnow(),
        "exp": expires,
    }
    return jwt.encode(payload, get_settings().SECRET_KEY, algorithm=ALGORITHM)


def read_refresh_token(token: str) -> tuple[int, int, str] | None:
    """(user id, session id, jti) of a refresh token we signed and that has not expired."""
    try:
        payload = jwt.decode(
            token,
            get_settings().SECRET_KEY,
            algorithms=[ALGORITHM],
            audience=REFRESH_AUDIENCE,
            options={"require": ["exp", "sub", "sid", "jti", "aud"], "verify_iat": False},
        )
    except jwt.PyJWTError:
        return None
    if not _issued_in_the_past(payload):
        return None
    user_id, session_id, jti = _id_claim(payload["sub"]), _id_claim(payload["sid"]), payload["jti"]
    if user_id is None or session_id is None or not isinstance(jti, str):
        return None
    return user_id, session_id, jti


def digest(secret: str) -> str:
    """What the database keeps of a refresh token's secret: a SHA-256 in hex."""
    return hashlib.sha256(secret.encode()).hexdigest()
