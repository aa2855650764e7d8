"""Passwords: argon2 hashes, always computed on the hashing queue (core/hashing.py)."""

from functools import cache, partial

from passlib.context import CryptContext
from passlib.exc import PasswordSizeError

from . import hashing

# argon2 is costly in CPU by design: always run it in a worker thread, never on
# the event loop. `deprecated="auto"` lets verify_and_update upgrade old hashes at login.
password_context = CryptContext(schemes=["argon2"], deprecated="auto")


def _hash(password: str) -> str:
    return str(password_context.hash(password))


def _verify_and_update(password: str, password_hash: str) -> tuple[bool, str | None]:
    try:
        valid, new_hash = password_context.verify_and_update(password, password_hash)
    except PasswordSizeError:
        # Longer than any password the hasher accepts (4096 bytes), so not this one.
        return False, None
    return bool(valid), new_hash


async def hash_password(password: str) -> str:
    password_hash: str = await hashing.queue.run(partial(_hash, password))
    return password_hash


async def verify_password(password: str, password_hash: str | None) -> tuple[bool, str | None]:
    """Check a password; returns (valid, a new hash to store or None).

    Without a stored hash (an unknown user) it verifies against a dummy hash the same way,
    so that an unknown user costs what a wrong password costs.
    """
    if password_hash is None:
        await hashing.queue.run(partial(_verify_and_update, password, _dummy_hash()))
        return False, None
    valid, new_hash = await hashing.queue.run(partial(_verify_and_update, password, password_hash))
    return bool(valid), new_hash


@cache
def _dummy_hash() -> str:
    return str(password_context.hash("not the password of anyone"))


def warm_up() -> None:
    """Compute the dummy hash before the first unknown-user login needs it."""
    _dummy_hash()
