import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any
from uuid import uuid4

from fastapi import Depends
from sqlalchemy import event, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from .config import Settings, get_settings


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
    return create_async_engine(
        url,
        pool_pre_ping=True,
        pool_size=settings.DATABASE_POOL_SIZE,
        max_overflow=settings.DATABASE_MAX_OVERFLOW,
        pool_timeout=settings.DATABASE_POOL_TIMEOUT,
        connect_args=connect_args,
        **options,
    )


def _unique_statement_name() -> str:
    return f"__asyncpg_{uuid4()}__"


engine = create_engine(get_settings())
SessionFactory = async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


async def get_session() -> AsyncIterator[AsyncSession]:
    async with SessionFactory() as session:
        try:
            yield session
        except Exception:
            await session.rollback()
            raise


SessionDep = Annotated[AsyncSession, Depends(get_session)]
