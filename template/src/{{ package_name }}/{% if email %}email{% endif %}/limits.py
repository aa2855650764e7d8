"""How many mails may be asked for: a few an hour per address, and per client.

Counted in the database (one row per key and hour), so that every process and replica
shares the counts. Every request is counted whether or not an account has the address, so
that a 429 tells nothing about accounts either.
"""

import hashlib
import math
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import case, delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from ..core.errors import TooManyRequestsError
from ..core.models import utcnow
from ..core.periodic import Periodic
from .models import EmailRateLimit

WINDOW = timedelta(hours=1)
# How often a process deletes the counts of hours that are over.
PRUNE_INTERVAL_SECONDS = 60.0
pruning = Periodic(PRUNE_INTERVAL_SECONDS)


class TooManyMailsError(TooManyRequestsError):
    description = "Too many mails asked for this hour"


_table = EmailRateLimit.metadata.tables[EmailRateLimit.__tablename__]


def now() -> datetime:
    """The current time (the tests move it)."""
    return utcnow()


def recipient_key(address: str) -> str:
    return "to:" + hashlib.sha256(address.lower().encode(errors="surrogatepass")).hexdigest()


def change_key(address: str) -> str:
    """Mails that changes to an account cause (not asked for) count apart from asked ones."""
    return "change:" + recipient_key(address).removeprefix("to:")


def client_key(address_key: str | None) -> str | None:
    return None if address_key is None else f"client:{address_key}"[:100]


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


async def _count(db: AsyncSession, key: str, moment: datetime) -> tuple[int, datetime]:
    dialect = db.get_bind().dialect.name
    insert: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert
    expired = _table.c.window_started_at <= moment - WINDOW
    statement = (
        insert(_table)
        .values(key=key, count=1, window_started_at=moment)
        .on_conflict_do_update(
            index_elements=[_table.c.key],
            set_={
                "count": case((expired, 1), else_=_table.c.count + 1),
                "window_started_at": case((expired, moment), else_=_table.c.window_started_at),
            },
        )
        .returning(_table.c.count, _table.c.window_started_at)
    )
    count, started = (await db.exec(statement)).one()
    return int(count), _utc(started)


async def count_mail(db: AsyncSession, keys: dict[str, int]) -> int | None:
    """Count one more mail against each key (its limit as the value), in the caller's transaction.

    Returns None while every key is within its limit, else the seconds until the fullest
    window ends (for Retry-After).
    """
    moment = now()
    if pruning.due():
        await prune(db, moment)
    waits = []
    for key, limit in keys.items():
        count, started = await _count(db, key, moment)
        if count > limit:
            waits.append(max(1, math.ceil((started + WINDOW - moment).total_seconds())))
    return max(waits) if waits else None


async def refuse_past_limit(db: AsyncSession, keys: dict[str, int]) -> None:
    """count_mail, raising 429 with Retry-After past a limit (and committing the count)."""
    wait = await count_mail(db, keys)
    if wait is not None:
        await db.commit()
        raise TooManyMailsError("Too many mails asked for; try again later", retry_after=wait)


async def prune(db: AsyncSession, moment: datetime) -> None:
    """Delete the counts of hours that are over."""
    await db.exec(
        delete(EmailRateLimit).where(col(EmailRateLimit.window_started_at) < moment - WINDOW)
    )
