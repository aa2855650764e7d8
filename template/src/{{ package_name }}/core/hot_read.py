"""A read made on every request (the signed-in user), without SQLAlchemy's per-statement work.

Touch it only to add another read that every request makes. `HotRead(statement).first(...)`
runs a SELECT built with SQLAlchemy Core and compiled once. On a pooled PostgreSQL engine it
borrows a connection from the engine's own pool (its fair queue, limits and ping after idle
apply) and asks asyncpg for the row itself: a quarter of the CPU time of the same read made
through a session, whose machinery is built for everything else (README, speed). Anywhere
else (SQLite, the tests' sessions, which share one rolled-back transaction, and an engine
whose statements are watched, as traces do) it reads through a read-only session like any
other query.
"""

from collections.abc import Callable, Sequence
from functools import cache
from typing import Any, NamedTuple

from sqlalchemy import Select
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import greenlet_spawn

from . import db


@cache
def unavailable() -> tuple[type[BaseException], ...]:
    """asyncpg's errors that mean the database (or the way to it) is away: the connection is
    discarded and the request gets the 503 that an OperationalError earns (core/errors.py)."""
    import asyncpg  # here: a SQLite project installs it for its tests only

    return (
        OSError,
        TimeoutError,
        asyncpg.InterfaceError,  # the connection is closed or broken
        asyncpg.PostgresConnectionError,  # SQLSTATE class 08
        asyncpg.exceptions.OperatorInterventionError,  # class 57: shutdown, cancelled statement
        asyncpg.exceptions.InsufficientResourcesError,  # class 53: too many connections
    )


_Processor = Callable[[Any], Any] | None


class _Compiled(NamedTuple):
    sql: str
    # Each parameter in the driver's order: its name, its value unless given, how to send it.
    binds: tuple[tuple[str, Any, _Processor], ...]
    columns: tuple[_Processor, ...]  # how each column's value is taken in, if at all


class HotRead:
    """A SELECT that returns its first row as fast as the database allows."""

    def __init__(self, statement: Select[*tuple[Any, ...]]) -> None:
        self.statement = statement
        self._compiled: dict[Dialect, _Compiled] = {}

    async def first(self, **params: Any) -> Sequence[Any] | None:
        bind = db.SessionFactory.kw.get("bind")
        if (
            isinstance(bind, AsyncEngine)
            and bind.dialect.driver == "asyncpg"
            # Whatever watches statements (traces, core/tracing.py) sees this one too.
            and not bind.sync_engine.dispatch.before_cursor_execute
        ):
            return await self._first_on_asyncpg(bind, params)
        async with db.new_db_session(read_only=True) as session:
            connection = await session.connection()
            row: Sequence[Any] | None = (await connection.execute(self.statement, params)).first()
            return row

    async def _first_on_asyncpg(
        self, engine: AsyncEngine, params: dict[str, Any]
    ) -> Sequence[Any] | None:
        compiled = self._compile(engine.dialect)
        args = []
        for name, default, process in compiled.binds:
            value = params.get(name, default)
            args.append(process(value) if process else value)
        # A connection from the pool as SQLAlchemy hands it out; errors while connecting are
        # SQLAlchemy's, as for any query.
        pooled = await greenlet_spawn(engine.sync_engine.raw_connection)
        driver: Any = pooled.driver_connection
        try:
            record: Sequence[Any] | None = await driver.fetchrow(compiled.sql, *args)
        except BaseException as error:
            # Cancelled mid-read (the client left), a statement may still be running on this
            # connection: it must not go back to the pool, nor may a broken one.
            gone = isinstance(error, unavailable())
            if gone or not isinstance(error, Exception):
                await greenlet_spawn(pooled.invalidate, error)
            if gone:
                raise OperationalError(
                    compiled.sql, None, error, hide_parameters=True, connection_invalidated=True
                ) from error
            raise
        finally:
            await greenlet_spawn(pooled.close)
        if record is None or not any(compiled.columns):
            return record
        return tuple(p(v) if p else v for p, v in zip(compiled.columns, record, strict=True))

    def _compile(self, dialect: Dialect) -> _Compiled:
        if (compiled := self._compiled.get(dialect)) is None:
            statement = self.statement.compile(dialect=dialect)
            binds = tuple(
                (
                    name,
                    bind.effective_value,
                    bind.type.dialect_impl(dialect).bind_processor(dialect),
                )
                for name, bind in ((n, statement.binds[n]) for n in statement.positiontup or ())
            )
            columns = tuple(
                column.type.dialect_impl(dialect).result_processor(dialect, None)
                for column in self.statement.selected_columns
            )
            compiled = self._compiled[dialect] = _Compiled(statement.string, binds, columns)
        return compiled
