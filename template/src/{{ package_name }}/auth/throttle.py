"""Failed sign-ins slow down: per account, and per client address.

An account (or a login that names none) gets a few attempts free; after that each further
failure makes it wait before the next, twice as long each time, up to a maximum; a success
ends the wait. A client address may fail a number of times within a window, then waits for
the window's end. Throttled attempts get 429 with Retry-After and cost no password hash.

The state lives in the database, so that every worker process and every replica serving the
same database shares it. Behind a reverse proxy the client address is the proxy's unless
uvicorn trusts it to tell the real one (--proxy-headers with FORWARDED_ALLOW_IPS).
"""

import hashlib
import ipaddress
import math
import time
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import DateTime, case, delete, or_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Field, SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from ..core import metrics
from ..core.config import get_settings
from ..core.errors import TooManyRequestsError
from ..core.models import utcnow

# The first wait after the free attempts; each further failure doubles it.
FIRST_WAIT = timedelta(seconds=1)
# Consecutive failures are forgotten after this long without an attempt, and their rows
# deleted: such a row would count for nothing anymore.
MEMORY = timedelta(days=1)
# How often a process deletes the rows that count for nothing anymore.
PRUNE_INTERVAL_SECONDS = 60.0


class SignInThrottle(SQLModel, table=True):
    """Failed sign-ins of one account, one unknown login, or one client address."""

    __tablename__ = "sign_in_throttles"
    __table_args__ = {"sqlite_autoincrement": True}

    id: int | None = Field(default=None, primary_key=True)
    # "user:<id>", "login:<sha256 of the login>" or "address:<address or IPv6 /64>".
    key: str = Field(max_length=100, unique=True, index=True)
    # Attempts counted since window_started_at: for an account, consecutive attempts not
    # yet followed by a success (counted before the password is checked); for an address,
    # failures.
    failures: int
    window_started_at: datetime = Field(sa_type=DateTime(timezone=True))
    last_attempt_at: datetime = Field(sa_type=DateTime(timezone=True), index=True)
    blocked_until: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


def now() -> datetime:
    """The current time (the tests move it)."""
    return utcnow()


def account_key(user_id: int | None, login: str) -> str:
    """The key of the account a sign-in names, or of the login when it names none.

    A login that names no account is throttled like an account, so that throttling never
    tells whether an account exists; it is stored as a digest, never as typed.
    """
    if user_id is not None:
        return f"user:{user_id}"
    digest = hashlib.sha256(login.lower().encode(errors="surrogatepass")).hexdigest()
    return f"login:{digest}"


def address_key(host: str | None) -> str | None:
    """The key of a client address: IPv4 as is, IPv6 by its /64 (one subscriber's)."""
    if not host:
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return f"address:{host[:80]}"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return f"address:{address.ipv4_mapped}"
        return f"address:{ipaddress.IPv6Network((address, 64), strict=False)}"
    return f"address:{address}"


def _utc(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything stored is UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _throttled(
    blocked_until: datetime, moment: datetime, by: Literal["account", "client"]
) -> TooManyRequestsError:
    metrics.count_throttled_sign_in(by)
    seconds = max(1, math.ceil((blocked_until - moment).total_seconds()))
    return TooManyRequestsError("Too many failed sign-ins; try again later", retry_after=seconds)


_table = SignInThrottle.metadata.tables[SignInThrottle.__tablename__]


def _upsert(session: AsyncSession, values: dict[str, Any]) -> Any:
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(_table).values(values)


async def _refuse_if_blocked(
    session: AsyncSession, account: str, address: str | None, moment: datetime
) -> None:
    keys = [account] if address is None else [account, address]
    statement = select(SignInThrottle.key, SignInThrottle.blocked_until).where(
        col(SignInThrottle.key).in_(keys)
    )
    ends = [(_utc(end), key) for key, end in (await session.exec(statement)).all() if end]
    if ends and (latest := max(ends))[0] > moment:
        raise _throttled(latest[0], moment, "client" if latest[1] == address else "account")


async def admit(session: AsyncSession, *, account: str, address: str | None) -> None:
    """Count a sign-in attempt against its account, or refuse it (429) while throttled.

    The attempt counts as a failure until record_success says otherwise, and is counted in
    one statement that also checks the wait: attempts racing each other are counted one by
    one, so no more of them reach the password check than the rule allows. Commits.
    """
    settings = get_settings()
    moment = now()
    await _refuse_if_blocked(session, account, address, moment)
    forgotten = col(SignInThrottle.last_attempt_at) < moment - MEMORY
    statement = (
        _upsert(
            session,
            {"key": account, "failures": 1, "window_started_at": moment, "last_attempt_at": moment},
        )
        .on_conflict_do_update(
            index_elements=[_table.c.key],
            set_={
                "failures": case((forgotten, 1), else_=_table.c.failures + 1),
                "window_started_at": case((forgotten, moment), else_=_table.c.window_started_at),
                "last_attempt_at": moment,
            },
            # While the account waits, nothing is counted and no row comes back.
            where=or_(_table.c.blocked_until.is_(None), _table.c.blocked_until <= moment),
        )
        .returning(_table.c.failures)
    )
    failures = (await session.exec(statement)).scalar()
    if failures is None:
        # Another attempt made the account wait since the check above.
        await session.rollback()
        await _refuse_if_blocked(session, account, None, moment)
        raise _throttled(moment, moment, "account")
    free = settings.SIGN_IN_ACCOUNT_FREE_FAILURES
    if failures >= free:
        # Should this attempt fail, the next one waits.
        doublings = min(failures - free, 20)
        longest = timedelta(seconds=settings.SIGN_IN_ACCOUNT_MAX_WAIT_SECONDS)
        wait = min(FIRST_WAIT * 2**doublings, longest)
        await session.exec(
            update(SignInThrottle)
            .where(col(SignInThrottle.key) == account)
            .values(blocked_until=moment + wait)
        )
    await _prune_now_and_then(session, moment)
    await session.commit()


async def record_failure(session: AsyncSession, *, address: str | None) -> None:
    """Count a failed sign-in against the client address (its account counted it already).

    Commits.
    """
    if address is None:
        return
    settings = get_settings()
    moment = now()
    window = timedelta(seconds=settings.SIGN_IN_ADDRESS_WINDOW_SECONDS)
    expired = col(SignInThrottle.window_started_at) <= moment - window
    statement = (
        _upsert(
            session,
            {"key": address, "failures": 1, "window_started_at": moment, "last_attempt_at": moment},
        )
        .on_conflict_do_update(
            index_elements=[_table.c.key],
            set_={
                "failures": case((expired, 1), else_=_table.c.failures + 1),
                "window_started_at": case((expired, moment), else_=_table.c.window_started_at),
                "last_attempt_at": moment,
            },
        )
        .returning(_table.c.failures, _table.c.window_started_at)
    )
    failures, started = (await session.exec(statement)).one()
    if failures >= settings.SIGN_IN_ADDRESS_MAX_FAILURES:
        await session.exec(
            update(SignInThrottle)
            .where(col(SignInThrottle.key) == address)
            .values(blocked_until=_utc(started) + window)
        )
    await session.commit()


async def record_success(session: AsyncSession, *, account: str) -> None:
    """A successful sign-in ends its account's run of failures. The caller commits."""
    await session.exec(delete(SignInThrottle).where(col(SignInThrottle.key) == account))


_last_pruned = -math.inf


async def _prune_now_and_then(session: AsyncSession, moment: datetime) -> None:
    global _last_pruned
    if time.monotonic() - _last_pruned < PRUNE_INTERVAL_SECONDS:
        return
    _last_pruned = time.monotonic()
    await prune(session, moment)


async def prune(session: AsyncSession, moment: datetime) -> None:
    """Delete the rows that count for nothing anymore (no attempt for MEMORY)."""
    await session.exec(
        delete(SignInThrottle).where(col(SignInThrottle.last_attempt_at) < moment - MEMORY)
    )
