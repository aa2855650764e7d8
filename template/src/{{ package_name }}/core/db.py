"""The database: `SessionDep` in a route, `new_db_session()` or `SessionFactory()` elsewhere.

A database session is called `db` throughout the code (`db: SessionDep`, `db: AsyncSession`),
because "session" here means a sign-in session (auth/sessions.py, /users/me/sessions): one
word, one thing. Below the first screen: read-only sessions for GET and HEAD. How the engine
is made (SQLite locking, ping after idle, PgBouncer) is core/engines.py's.
"""

import weakref
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlalchemy.orm import ORMExecuteState
from sqlmodel import Session
from sqlmodel.ext.asyncio.session import AsyncSession

from .config import get_settings
from .engines import create_engine

engine = create_engine(get_settings())
SessionFactory = async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)

# GET and HEAD change nothing (HTTP says so), so their sessions read without a transaction:
# on PostgreSQL no BEGIN and no ROLLBACK around the queries, one round trip each. Each
# statement still sees everything committed before it starts, as it would inside a READ
# COMMITTED transaction (PostgreSQL's default). Such a session refuses to write; SQLite
# reads this way already (see core/engines.py).
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
