import asyncio
import hashlib
import math
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from datetime import datetime, timedelta
from functools import cache, partial
from typing import Any

import jwt
from passlib.context import CryptContext
from passlib.exc import PasswordSizeError

from . import metrics
from .config import get_settings
from .errors import BusyError
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


# argon2 is costly in CPU by design: always run it in a worker thread, never on
# the event loop. `deprecated="auto"` lets verify_and_update upgrade old hashes at login.
password_context = CryptContext(schemes=["argon2"], deprecated="auto")


def _usable_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


# Hashing threads run this much nicer than the rest of the process: when the CPUs are busy,
# the event loop (every other request) comes first, and a flood of sign-ins only waits longer.
HASHING_NICENESS = 10


def _yield_cpu() -> None:
    # On Linux a thread has a niceness of its own; elsewhere this would slow the whole process.
    if sys.platform == "linux":
        current = os.getpriority(os.PRIO_PROCESS, 0)
        with suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, 0, min(19, current + HASHING_NICENESS))


# What the running request holds a place in the hashing queue for, if it holds one (see
# place()): "sign_in" or "other".
_holding_place: ContextVar[str | None] = ContextVar("holding_place", default=None)


class HashingQueue:
    """Password hashing on `workers` threads, with at most `queue_size` hashes waiting.

    Each hash holds a core for a while by design, and tens of MB, so at most one runs per usable
    CPU; a burst of sign-ins would otherwise starve the event loop and swell memory. What
    waits is bounded too, in number and in the time it would wait (from what hashes cost
    lately): beyond either a request is refused at once (503) instead of waiting longer than
    any client would. While a thread is free, a sign-in's hash is always taken.

    Sign-ins come first: a free thread takes a waiting sign-in's hash before any other, and a
    quarter of the places (at least one per thread) are kept for sign-ins. A flood of
    sign-ups or password changes therefore never makes a sign-in wait behind it, nor refuses
    one.
    """

    def __init__(self, workers: int, queue_size: int, max_wait_seconds: float = 5.0) -> None:
        self.workers = workers
        self.capacity = workers + queue_size
        self.others_capacity = max(1, self.capacity - max(workers, queue_size // 4))
        self.max_wait_seconds = max_wait_seconds
        self.pending = 0  # hashes running or waiting, and places held for one
        self.others_pending = 0  # those of them not for a sign-in
        self._seconds_per_hash = 0.1
        self._free_threads = workers
        self._waiting: dict[bool, deque[asyncio.Future[None]]] = {True: deque(), False: deque()}
        self._executor = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="password-hash", initializer=_yield_cpu
        )

    @contextmanager
    def place(self, *, sign_in: bool = False) -> Iterator[None]:
        """Hold a place in the queue, or raise BusyError (503) at once when it is full.

        Every hash takes a place for itself unless its request holds one already: a sign-in
        takes its place before its first query, so that a full queue refuses it before it
        has cost the database anything.
        """
        if _holding_place.get() is not None:
            yield
            return
        if self.is_full(sign_in=sign_in):
            raise self.busy_error()
        self.pending += 1
        self.others_pending += not sign_in
        metrics.set_password_hash_queue_depth(self.pending)
        holding = _holding_place.set("sign_in" if sign_in else "other")
        try:
            yield
        finally:
            _holding_place.reset(holding)
            self.pending -= 1
            self.others_pending -= not sign_in
            metrics.set_password_hash_queue_depth(self.pending)

    def is_full(self, *, sign_in: bool = True) -> bool:
        """Whether a hash asked for now would be refused (see place())."""
        if not sign_in:
            return (
                self.pending >= self.capacity
                or self.others_pending >= self.others_capacity
                or self._seconds_until_done(self.pending) > self.max_wait_seconds
            )
        # Behind the sign-ins already waiting and, at worst, a thread's worth of other hashes
        # running: the others waiting go after it.
        ahead = self.pending - self.others_pending + min(self.others_pending, self.workers)
        return self.pending >= self.workers and (
            self.pending >= self.capacity or self._seconds_until_done(ahead) > self.max_wait_seconds
        )

    def busy_error(self) -> BusyError:
        return BusyError(
            "Too many password checks at once; try again shortly",
            retry_after=self._seconds_to_drain(),
        )

    async def run(self, call: Callable[[], Any]) -> Any:
        with self.place():
            sign_in = _holding_place.get() == "sign_in"
            await self._take_thread(sign_in)
            try:
                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(self._executor, self._timed, call)
            finally:
                self._give_thread()

    async def _take_thread(self, sign_in: bool) -> None:
        ahead = self._waiting[True] if sign_in else (*self._waiting[True], *self._waiting[False])
        if self._free_threads and not ahead:
            self._free_threads -= 1
            return
        turn = asyncio.get_running_loop().create_future()
        self._waiting[sign_in].append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._give_thread()  # handed over just as the request went away
            else:
                self._waiting[sign_in].remove(turn)
            raise

    def _give_thread(self) -> None:
        # To the next waiting sign-in, else the next other hash, else back to the pool.
        for line in (self._waiting[True], self._waiting[False]):
            while line:
                turn = line.popleft()
                if not turn.done():
                    turn.set_result(None)
                    return
        self._free_threads += 1

    def _timed(self, call: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        try:
            return call()
        finally:
            # A running mean of what one hash costs here, for Retry-After.
            seconds = time.perf_counter() - started
            self._seconds_per_hash += (seconds - self._seconds_per_hash) / 16

    def _seconds_until_done(self, ahead: int) -> float:
        # For one more hash behind `ahead` others, with each thread taking the next in line.
        return math.ceil((ahead + 1) / self.workers) * self._seconds_per_hash

    def _seconds_to_drain(self) -> int:
        return max(1, math.ceil(self.pending * self._seconds_per_hash / self.workers))


hashing = HashingQueue(
    _usable_cpus(),
    get_settings().PASSWORD_HASH_QUEUE_SIZE,
    get_settings().PASSWORD_HASH_MAX_WAIT_SECONDS,
)


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
    password_hash: str = await hashing.run(partial(_hash, password))
    return password_hash


async def verify_password(password: str, password_hash: str | None) -> tuple[bool, str | None]:
    """Check a password; returns (valid, a new hash to store or None).

    Without a stored hash (an unknown user) it verifies against a dummy hash the same way,
    so that an unknown user costs what a wrong password costs.
    """
    if password_hash is None:
        await hashing.run(partial(_verify_and_update, password, _dummy_hash()))
        return False, None
    valid, new_hash = await hashing.run(partial(_verify_and_update, password, password_hash))
    return bool(valid), new_hash


@cache
def _dummy_hash() -> str:
    return str(password_context.hash("not the password of anyone"))


def warm_up() -> None:
    """Compute the dummy hash before the first unknown-user login needs it."""
    _dummy_hash()


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
