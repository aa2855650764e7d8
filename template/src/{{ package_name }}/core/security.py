import asyncio
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import timedelta
from functools import cache

import jwt
from passlib.context import CryptContext

from . import metrics
from .config import get_settings
from .models import MAX_ID, utcnow

ALGORITHM = "HS256"

# argon2 costs about 100 ms of CPU by design: always run it in a worker thread, never on
# the event loop. `deprecated="auto"` lets verify_and_update upgrade old hashes at login.
password_context = CryptContext(schemes=["argon2"], deprecated="auto")


def _usable_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


# At most one hash per usable CPU at a time: each takes a core for about 100 ms and tens
# of MB, so a burst of logins would otherwise starve the event loop and swell memory.
# Further logins queue here instead.
_hashing = ThreadPoolExecutor(max_workers=_usable_cpus(), thread_name_prefix="password-hash")
_hashes_in_pool = 0


@contextmanager
def _counted_in_hashing_pool() -> Iterator[None]:
    # The password_hash_queue_depth metric: hashes waiting for or running on the pool.
    global _hashes_in_pool
    _hashes_in_pool += 1
    metrics.set_password_hash_queue_depth(_hashes_in_pool)
    try:
        yield
    finally:
        _hashes_in_pool -= 1
        metrics.set_password_hash_queue_depth(_hashes_in_pool)


def _hash(password: str) -> str:
    return str(password_context.hash(password))


def _verify_and_update(password: str, password_hash: str) -> tuple[bool, str | None]:
    valid, new_hash = password_context.verify_and_update(password, password_hash)
    return bool(valid), new_hash


async def hash_password(password: str) -> str:
    with _counted_in_hashing_pool():
        return await asyncio.get_running_loop().run_in_executor(_hashing, _hash, password)


async def verify_password(password: str, password_hash: str | None) -> tuple[bool, str | None]:
    """Check a password; returns (valid, a new hash to store or None).

    Without a stored hash (an unknown user) it verifies against a dummy hash the same way,
    so that an unknown user costs what a wrong password costs.
    """
    loop = asyncio.get_running_loop()
    with _counted_in_hashing_pool():
        if password_hash is None:
            await loop.run_in_executor(_hashing, _verify_and_update, password, _dummy_hash())
            return False, None
        return await loop.run_in_executor(_hashing, _verify_and_update, password, password_hash)


@cache
def _dummy_hash() -> str:
    return str(password_context.hash("not the password of anyone"))


def warm_up() -> None:
    """Compute the dummy hash before the first unknown-user login needs it."""
    _dummy_hash()


def create_access_token(user_id: int, expires_delta: timedelta | None = None) -> str:
    settings = get_settings()
    if expires_delta is None:
        expires_delta = timedelta(minutes=settings.ACCESS_TOKEN_EXPIRE_MINUTES)
    now = utcnow()
    payload = {"sub": str(user_id), "iat": now, "exp": now + expires_delta}
    return jwt.encode(payload, settings.SECRET_KEY, algorithm=ALGORITHM)


# A client sends the same token with every request until it expires. Checking it again
# (base64, JSON, HMAC, claims) costs more than a query's worth of CPU, so tokens that
# passed are remembered with what they said, keyed by the key that signed them. The
# expiry is still checked on every request, and nothing is remembered of a token that
# failed: only tokens signed with our key get in, so no client can fill this.
_VERIFIED_MAX = 4096
_verified: dict[tuple[str, str], tuple[int, float]] = {}


def read_access_token(token: str) -> int | None:
    """The user id a valid token names, or None for any invalid or expired token."""
    key = get_settings().SECRET_KEY
    if (known := _verified.get((token, key))) is not None:
        user_id, expires = known
        return user_id if time.time() < expires else None
    try:
        payload = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            options={"require": ["exp", "sub"]},
        )
    except jwt.PyJWTError:
        return None
    subject, expires = payload["sub"], payload["exp"]
    if not isinstance(subject, str) or not (subject.isascii() and subject.isdigit()):
        return None
    user_id = int(subject)
    if not 1 <= user_id <= MAX_ID:
        return None
    if len(_verified) >= _VERIFIED_MAX:
        del _verified[next(iter(_verified))]  # the oldest
    _verified[token, key] = (user_id, float(expires))
    return user_id
