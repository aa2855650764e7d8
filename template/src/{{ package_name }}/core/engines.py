"""How the engine is made: `create_engine()` and the mechanisms it sets up on each database.

SQLite's locking (reads without a transaction, writes behind BEGIN IMMEDIATE), a ping for a
pooled connection that rested (PostgreSQL), statement names for PgBouncer, and the fair pool
(core/pool.py) on both. core/db.py makes the one engine the service uses; touch this file to
change how connections behave, not how code gets a session.
"""

import logging
import time
from typing import Any
from uuid import uuid4

from sqlalchemy import event, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from .config import Settings
from .pool import FairAsyncPool


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
