"""Failed sign-ins slow down, counted so that nobody locks anyone else out (one piece: the
three counts below are read and written together, by admit()).

Three counts, each a row keyed by what it counts:

- per account *and* client address (a "pair"): a few consecutive failures are free, then
  each further failure makes the pair wait before its next attempt, twice as long each time,
  up to a maximum; a success ends the wait. This is the count that stops guessing.
- per account over every address: past a much higher number of consecutive failures the
  account waits too, but only for the pairs that have failed recently: its owner, signing
  in from an address with no recent failures, is never refused because of an attacker
  elsewhere.
- per client address over every account: past a number of failures within a window the
  address loses its free failures (each pair from it waits after its first failure), but it
  is never refused outright: a neighbour behind the same address (one NAT, one proxy) who
  types the right password gets in at once, while an attacker there gets one guess per
  account before each pair's wait starts doubling.

Throttled attempts get 429 with Retry-After and cost no password hash. A wrong current
password at PUT /users/me/password counts like a failed sign-in. The state lives in the
database, so that every worker process and every replica serving the same database shares
it. Behind a reverse proxy the client address is the proxy's unless the server trusts it to
tell the real one (FORWARDED_ALLOW_IPS).
"""

import hashlib
import ipaddress
import math
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import DateTime, case, delete, or_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Field, SQLModel, col
from sqlmodel.ext.asyncio.session import AsyncSession

from ..core import metrics
from ..core.config import get_settings
from ..core.errors import TooManyRequestsError
from ..core.models import utcnow
from ..core.periodic import Periodic
from ..users.service import fold_login

# The first wait after the free attempts; each further failure doubles it.
FIRST_WAIT = timedelta(seconds=1)
# Consecutive failures are forgotten after this long without an attempt, and their rows
# deleted: such a row would count for nothing anymore.
MEMORY = timedelta(days=1)
# How often a process deletes the rows that count for nothing anymore.
PRUNE_INTERVAL_SECONDS = 60.0
pruning = Periodic(PRUNE_INTERVAL_SECONDS)


class SignInThrottle(SQLModel, table=True):
    """Failed sign-ins of one account and address, one account, or one client address."""

    __tablename__ = "sign_in_throttles"
    __table_args__ = {"sqlite_autoincrement": True}

    id: int | None = Field(default=None, primary_key=True)
    # "pair:<sha256 of account and address>", "user:<id>", "login:<sha256 of the login>"
    # or "address:<address or IPv6 /64>".
    key: str = Field(max_length=100, unique=True, index=True)
    # Attempts counted since window_started_at: for a pair or an account, consecutive
    # attempts not yet followed by a success (counted before the password is checked); for
    # an address, failures.
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
    digest = hashlib.sha256(fold_login(login).encode(errors="surrogatepass")).hexdigest()
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


def pair_key(account: str, address: str | None) -> str:
    """The key of one account tried from one client address."""
    return "pair:" + hashlib.sha256(f"{account}|{address or ''}".encode()).hexdigest()


def _utc(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything stored is UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


class SignInThrottledError(TooManyRequestsError):
    description = "Too many failed sign-ins"


def _throttled(
    blocked_until: datetime, moment: datetime, by: Literal["account", "client"]
) -> SignInThrottledError:
    metrics.count_throttled_sign_in(by)
    seconds = max(1, math.ceil((blocked_until - moment).total_seconds()))
    return SignInThrottledError("Too many failed sign-ins; try again later", retry_after=seconds)


def _wait(failures_past_free: int) -> timedelta:
    longest = timedelta(seconds=get_settings().SIGN_IN_ACCOUNT_MAX_WAIT_SECONDS)
    return min(FIRST_WAIT * (1 << min(failures_past_free, 20)), longest)


_table = SignInThrottle.metadata.tables[SignInThrottle.__tablename__]


def _upsert(db: AsyncSession, values: dict[str, Any]) -> Any:
    dialect = db.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(_table).values(values)


def _count(db: AsyncSession, key: str, moment: datetime, *, unless_blocked: bool) -> Any:
    """One more consecutive attempt for `key` (forgotten after MEMORY), returning the count."""
    forgotten = col(SignInThrottle.last_attempt_at) < moment - MEMORY
    return (
        _upsert(
            db,
            {"key": key, "failures": 1, "window_started_at": moment, "last_attempt_at": moment},
        )
        .on_conflict_do_update(
            index_elements=[_table.c.key],
            set_={
                "failures": case((forgotten, 1), else_=_table.c.failures + 1),
                "window_started_at": case((forgotten, moment), else_=_table.c.window_started_at),
                "last_attempt_at": moment,
            },
            # While it waits, nothing is counted and no row comes back.
            where=or_(_table.c.blocked_until.is_(None), _table.c.blocked_until <= moment)
            if unless_blocked
            else None,
        )
        .returning(_table.c.failures)
    )


async def _rows(db: AsyncSession, keys: list[str]) -> dict[str, Any]:
    # Plain rows, not objects the session would keep (and then compare, naive dates from
    # SQLite against aware ones, at every bulk DELETE or UPDATE).
    statement: Any = _table.select().where(_table.c.key.in_(keys))
    return {row.key: row for row in (await db.exec(statement)).all()}


async def admit(db: AsyncSession, *, account: str, address: str | None) -> None:
    """Count a sign-in attempt against its pair and account, or refuse it (429).

    The attempt counts as a failure until record_success says otherwise, and is counted
    against its pair in one statement that also checks the pair's wait: attempts racing
    each other are counted one by one, so no more of them reach the password check than the
    rule allows. Commits.
    """
    settings = get_settings()
    moment = now()
    pair = pair_key(account, address)
    rows = await _rows(db, [pair, account] if address is None else [pair, account, address])
    window = timedelta(seconds=settings.SIGN_IN_ADDRESS_WINDOW_SECONDS)
    address_row = rows.get(address or "")
    address_over = (
        address_row is not None
        and _utc(address_row.window_started_at) > moment - window
        and address_row.failures >= settings.SIGN_IN_ADDRESS_MAX_FAILURES
    )
    account_row = rows.get(account)
    account_over = (
        account_row is not None
        and _utc(account_row.last_attempt_at) >= moment - MEMORY
        and account_row.failures >= settings.SIGN_IN_ACCOUNT_MAX_FAILURES
    )
    by: Literal["account", "client"] = "client" if address_over else "account"
    pair_row = rows.get(pair)
    pair_ends = _utc(pair_row.blocked_until) if pair_row and pair_row.blocked_until else None
    if pair_ends is not None and pair_ends > moment:
        raise _throttled(pair_ends, moment, by)
    # A hammered account waits for the pairs that failed recently, never for a clean one.
    pair_failed = pair_row is not None and _utc(pair_row.last_attempt_at) >= moment - MEMORY
    account_ends = (
        _utc(account_row.blocked_until) if account_row and account_row.blocked_until else None
    )
    if account_over and pair_failed and account_ends is not None and account_ends > moment:
        raise _throttled(account_ends, moment, "account")

    failures = (await db.exec(_count(db, pair, moment, unless_blocked=True))).scalar()
    if failures is None:
        # Another attempt made the pair wait since the check above: tell the wait it set.
        raced = (await _rows(db, [pair])).get(pair)
        await db.rollback()
        ends = _utc(raced.blocked_until) if raced and raced.blocked_until else moment
        raise _throttled(ends, moment, by)
    account_failures = (
        await db.exec(_count(db, account, moment, unless_blocked=False))
    ).scalar_one()
    # Should this attempt fail, the next one of its pair waits once the free failures are
    # spent; there are none from an address over its limit or for a hammered account.
    free = 0 if address_over or account_over else settings.SIGN_IN_ACCOUNT_FREE_FAILURES
    if failures >= free:
        await db.exec(
            update(SignInThrottle)
            .where(col(SignInThrottle.key) == pair)
            .values(blocked_until=moment + _wait(failures - max(free, 1)))
        )
    most = settings.SIGN_IN_ACCOUNT_MAX_FAILURES
    if account_failures >= most:
        await db.exec(
            update(SignInThrottle)
            .where(col(SignInThrottle.key) == account)
            .values(blocked_until=moment + _wait(account_failures - most))
        )
    if pruning.due():
        await prune(db, moment)
    await db.commit()


async def record_failure(db: AsyncSession, *, address: str | None) -> None:
    """Count a failed sign-in against the client address (its pair counted it already).

    Commits.
    """
    if address is None:
        return
    settings = get_settings()
    moment = now()
    window = timedelta(seconds=settings.SIGN_IN_ADDRESS_WINDOW_SECONDS)
    expired = col(SignInThrottle.window_started_at) <= moment - window
    statement = _upsert(
        db,
        {"key": address, "failures": 1, "window_started_at": moment, "last_attempt_at": moment},
    ).on_conflict_do_update(
        index_elements=[_table.c.key],
        set_={
            "failures": case((expired, 1), else_=_table.c.failures + 1),
            "window_started_at": case((expired, moment), else_=_table.c.window_started_at),
            "last_attempt_at": moment,
        },
    )
    await db.exec(statement)
    await db.commit()


async def record_success(db: AsyncSession, *, account: str, address: str | None) -> None:
    """A success ends the run of failures of its pair and of its account. The caller commits."""
    # One row at a time, the pair's first: the order admit() locks them in. One DELETE of
    # both would lock them in whatever order PostgreSQL scans them, and a success racing
    # another attempt of the same account could deadlock with it.
    for key in (pair_key(account, address), account):
        await db.exec(delete(SignInThrottle).where(col(SignInThrottle.key) == key))


async def prune(db: AsyncSession, moment: datetime) -> None:
    """Delete the rows that count for nothing anymore (no attempt for MEMORY)."""
    await db.exec(
        delete(SignInThrottle).where(col(SignInThrottle.last_attempt_at) < moment - MEMORY)
    )
