"""The database: `SessionDep` in a route, `new_db_session()` or `SessionFactory()` elsewhere.

A database session is called `db` throughout the code (`db: SessionDep`, `db: AsyncSession`),
because "session" here means a sign-in session (auth/sessions.py, /users/me/sessions): one
word, one thing. Below the first screen: the engine's mechanisms (SQLite locking, ping after
idle, read-only GET sessions).
"""

import logging
import time
import weakref
from collections.abc import AsyncIterator
from typing import Annotated, Any
from uuid import uuid4

from fastapi import Depends, Request
from sqlalchemy import event, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import ORMExecuteState
from sqlmodel import Session
from sqlmodel.ext.asyncio.session import AsyncSession

from .config import Settings, get_settings
from .pool import FairAsyncPool


def _configure_sqlite(engine: AsyncEngine) -> None:
    # aiosqlite logs each statement with its parameters, password hashes among them, at
    # DEBUG: keep it above that whatever the root logger's level.
    logging.getLogger("aiosqlite").setLevel(logging.INFO)

    # SQLite ignores foreign keys unless asked on every connection. WAL lets readers go on
    # while one connection writes.
    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # The driver's own transaction handling breaks SAVEPOINT: transactions are begun
        # below instead.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    # SQLite has one writer at a time. A transaction that read first and then wants to
    # write fails at once with "database is locked" when another connection writes,
    # whatever the busy timeout. So reads run on their own (each sees the latest commit,
    # like PostgreSQL's READ COMMITTED), and the first statement that is not a read begins
    # the transaction with BEGIN IMMEDIATE, which waits its turn for up to the busy
    # timeout (DATABASE_COMMAND_TIMEOUT) like any lock wait.
    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def begin_before_writing(
        connection: Any,
        cursor: Any,
        statement: str,
        _parameters: Any,
        _context: Any,
        _executemany: bool,
    ) -> None:
        reads = statement.lstrip()[:6].upper() == "SELECT"
        began = connection.connection.driver_connection.in_transaction
        if not reads and not began and connection.in_transaction():
            cursor.execute("BEGIN IMMEDIATE")


def _is_memory_database(url: str) -> bool:
    database = make_url(url).database
    return not database or database == ":memory:" or "mode=memory" in url


def create_engine(settings: Settings, url: str | None = None) -> AsyncEngine:
    url = url or settings.DATABASE_URL
    # Error messages then never carry statement parameters, such as password hashes.
    options: dict[str, Any] = {"hide_parameters": True}
    if url.startswith("sqlite"):
        if not _is_memory_database(url):
            options.update(
                poolclass=FairAsyncPool,
                pool_size=settings.DATABASE_POOL_SIZE,
                max_overflow=settings.DATABASE_MAX_OVERFLOW,
                pool_timeout=settings.DATABASE_POOL_TIMEOUT,
            )
        engine = create_async_engine(
            url, connect_args={"timeout": settings.DATABASE_COMMAND_TIMEOUT}, **options
        )
        _configure_sqlite(engine)
        return engine
    connect_args: dict[str, Any] = {
        "timeout": settings.DATABASE_CONNECT_TIMEOUT,
        "command_timeout": settings.DATABASE_COMMAND_TIMEOUT,
    }
    if settings.DATABASE_PGBOUNCER:
        # PgBouncer in transaction mode hands each transaction to any server connection:
        # statements prepared on one are unknown on the next, so cache none and give each
        # a unique name.
        connect_args.update(
            statement_cache_size=0,
            prepared_statement_cache_size=0,
            prepared_statement_name_func=_unique_statement_name,
        )
    engine = create_async_engine(
        url,
        poolclass=FairAsyncPool,
        pool_size=settings.DATABASE_POOL_SIZE,
        max_overflow=settings.DATABASE_MAX_OVERFLOW,
        pool_timeout=settings.DATABASE_POOL_TIMEOUT,
        connect_args=connect_args,
        **options,
    )
    _ping_after_idle(engine)
    return engine


# A pooled connection that rested this long is pinged before use, so that one PostgreSQL
# killed while it sat in the pool (a restart, a failover) is replaced instead of failing a
# request. A busy pool hands connections straight on and pays nothing: pool_pre_ping would
# cost every checkout a BEGIN, a ping and a ROLLBACK. Should a connection die within this
# window, its request fails with a 503 and the pool replaces every connection it held.
PING_AFTER_IDLE_SECONDS = 1.0


def _ping_after_idle(engine: AsyncEngine) -> None:
    dialect = engine.dialect

    @event.listens_for(engine.sync_engine, "checkin")
    def on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as error:
            # The pool discards this connection and checks out another, up to three times.
            raise DisconnectionError("a pooled connection did not answer a ping") from error


def _unique_statement_name() -> str:
    return f"__asyncpg_{uuid4()}__"


engine = create_engine(get_settings())
SessionFactory = async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)

# GET and HEAD change nothing (HTTP says so), so their sessions read without a transaction:
# on PostgreSQL no BEGIN and no ROLLBACK around the queries, one round trip each. Each
# statement still sees everything committed before it starts, as it would inside a READ
# COMMITTED transaction (PostgreSQL's default). Such a session refuses to write; SQLite
# reads this way already (see _configure_sqlite).
READ_ONLY_METHODS = frozenset({"GET", "HEAD"})
_READ_ONLY = "read_only"
_autocommit_engines: weakref.WeakKeyDictionary[AsyncEngine, AsyncEngine] = (
    weakref.WeakKeyDictionary()
)


class ReadOnlySessionError(RuntimeError):
    """A GET or HEAD request tried to write through its session."""


def new_db_session(*, read_only: bool = False) -> AsyncSession:
    """A session from SessionFactory; with read_only, one that reads without a transaction."""
    if not read_only:
        return SessionFactory()
    options: dict[str, Any] = {"info": {_READ_ONLY: True}}
    bind = SessionFactory.kw.get("bind")
    # Only a pooled PostgreSQL engine: a session the tests bind to one connection (inside
    # their outer transaction) keeps that transaction.
    if isinstance(bind, AsyncEngine) and bind.dialect.name == "postgresql":
        if (autocommit := _autocommit_engines.get(bind)) is None:
            autocommit = bind.execution_options(isolation_level="AUTOCOMMIT")
            _autocommit_engines[bind] = autocommit
        options["bind"] = autocommit
    return SessionFactory(**options)


def _refuse(what: str) -> ReadOnlySessionError:
    return ReadOnlySessionError(
        f"{what} in a GET or HEAD request, whose session reads without a transaction: "
        "write from a POST, PUT, PATCH or DELETE route, or open a session of your own "
        "with SessionFactory()"
    )


@event.listens_for(Session, "before_flush")
def _refuse_flush(db: Session, _context: Any, _instances: Any) -> None:
    if db.info.get(_READ_ONLY) and (db.new or db.dirty or db.deleted):
        raise _refuse("Changed objects were flushed")


@event.listens_for(Session, "do_orm_execute")
def _refuse_write_statements(state: ORMExecuteState) -> None:
    if state.session.info.get(_READ_ONLY) and (
        state.is_insert or state.is_update or state.is_delete
    ):
        raise _refuse("An INSERT, UPDATE or DELETE was executed")


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with new_db_session(read_only=request.method in READ_ONLY_METHODS) as db:
        try:
            yield db
        except Exception:
            await db.rollback()
            raise


SessionDep = Annotated[AsyncSession, Depends(get_session)]
