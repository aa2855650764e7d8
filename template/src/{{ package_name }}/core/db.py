from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from .config import Settings, get_settings


def _enable_sqlite_foreign_keys_and_savepoints(engine: AsyncEngine) -> None:
    # SQLite ignores foreign keys unless asked on every connection, and the driver's own
    # transaction handling breaks SAVEPOINT; SQLAlchemy's documented fix is to let it emit
    # BEGIN itself.
    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN")


def create_engine(settings: Settings, url: str | None = None) -> AsyncEngine:
    url = url or settings.DATABASE_URL
    if url.startswith("sqlite"):
        engine = create_async_engine(
            url, connect_args={"timeout": settings.DATABASE_CONNECT_TIMEOUT}
        )
        _enable_sqlite_foreign_keys_and_savepoints(engine)
        return engine
    return create_async_engine(
        url,
        pool_pre_ping=True,
        pool_size=settings.DATABASE_POOL_SIZE,
        max_overflow=settings.DATABASE_MAX_OVERFLOW,
        pool_timeout=settings.DATABASE_POOL_TIMEOUT,
        connect_args={
            "timeout": settings.DATABASE_CONNECT_TIMEOUT,
            "command_timeout": settings.DATABASE_COMMAND_TIMEOUT,
        },
    )


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
