"""Sign-in sessions: one per sign-in, each with a refresh token that works once (one piece:
the table, the tokens it issues and their rotation are one protocol, read together).

An access token names its session (`sid`) and works while the session lives; the query
that loads the current user checks that (auth/dependencies.py). A refresh token is a
signed token whose random `jti` the session keeps only as a hash; each refresh replaces it.
Presenting a replaced (spent) one again means two parties hold the session's tokens: the
session ends. `last_used_at` moves when a session opens and at each refresh, not on every
request, so that reads stay reads.
"""

import secrets
from datetime import datetime, timedelta

from sqlalchemy import DateTime, or_, update
from sqlmodel import Field, SQLModel, col, delete, select
from sqlmodel.ext.asyncio.session import AsyncSession

from ..core.config import get_settings
from ..core.errors import NotFoundError
from ..core.models import UTCDateTime, timestamp_field, utcnow
from ..core.tokens import create_access_token, create_refresh_token, digest, read_refresh_token
from ..users.models import User

# A user's live sessions beyond this many end, least recently used first, as new ones open:
# sign-ins cannot grow the table without bound.
MAX_SESSIONS_PER_USER = 100
USER_AGENT_MAX_LENGTH = 255


class SessionNotFoundError(NotFoundError):
    description = "Session not found"


class UserSession(SQLModel, table=True):
    __tablename__ = "user_sessions"
    # AUTOINCREMENT: SQLite would otherwise hand a deleted session's id to the next one.
    __table_args__ = {"sqlite_autoincrement": True}

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id", ondelete="CASCADE", index=True)
    created_at: datetime = timestamp_field()
    last_used_at: datetime = timestamp_field()
    user_agent: str | None = Field(default=None, max_length=USER_AGENT_MAX_LENGTH)
    # SHA-256 (hex) of the current refresh token's jti; the token itself is never stored.
    refresh_token_hash: str = Field(max_length=64)
    refresh_expires_at: datetime = Field(sa_type=DateTime(timezone=True))
    ended_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class Token(SQLModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105 (not a secret)
    # Seconds until the access token expires.
    expires_in: int
    refresh_token: str


class SessionPublic(SQLModel):
    id: int
    created_at: UTCDateTime
    last_used_at: UTCDateTime
    user_agent: str | None
    # Whether this is the session of the token that asked.
    current: bool


class SessionsPublic(SQLModel):
    data: list[SessionPublic]
    count: int


def _token_pair(user_id: int, session_id: int, jti: str, refresh_expires: datetime) -> Token:
    minutes = get_settings().ACCESS_TOKEN_EXPIRE_MINUTES
    return Token(
        access_token=create_access_token(user_id, session_id),
        expires_in=minutes * 60,
        refresh_token=create_refresh_token(user_id, session_id, jti, refresh_expires),
    )


def _refresh_expiry(now: datetime) -> datetime:
    return now + timedelta(days=get_settings().REFRESH_TOKEN_EXPIRE_DAYS)


def _clean_user_agent(user_agent: str | None) -> str | None:
    if not user_agent:
        return None
    # Headers arrive as Latin-1 text; PostgreSQL cannot store NUL.
    return user_agent.replace("\x00", "")[:USER_AGENT_MAX_LENGTH] or None


async def start_session(db: AsyncSession, user: User, user_agent: str | None) -> Token:
    """A new session for a user who just proved who they are; commits."""
    assert user.id is not None  # noqa: S101
    now = utcnow()
    # Ended and expired sessions go, and the least recently used live ones beyond the
    # limit, making room for this one.
    keep = (
        select(UserSession.id)
        .where(
            col(UserSession.user_id) == user.id,
            col(UserSession.ended_at).is_(None),
            col(UserSession.refresh_expires_at) > now,
        )
        .order_by(col(UserSession.last_used_at).desc(), col(UserSession.id).desc())
        .limit(MAX_SESSIONS_PER_USER - 1)
    )
    await db.exec(
        delete(UserSession).where(
            col(UserSession.user_id) == user.id, col(UserSession.id).not_in(keep)
        )
    )
    jti = secrets.token_urlsafe(32)
    expires = _refresh_expiry(now)
    user_session = UserSession(
        user_id=user.id,
        created_at=now,
        last_used_at=now,
        user_agent=_clean_user_agent(user_agent),
        refresh_token_hash=digest(jti),
        refresh_expires_at=expires,
    )
    db.add(user_session)
    await db.commit()
    assert user_session.id is not None  # noqa: S101
    return _token_pair(user.id, user_session.id, jti, expires)


async def refresh_session(db: AsyncSession, refresh_token: str) -> Token | None:
    """A new token pair in the same session, spending `refresh_token`; None if it is no good.

    A spent token presented again ends its session.
    """
    claims = read_refresh_token(refresh_token)
    if claims is None:
        return None
    user_id, session_id, jti = claims
    now = utcnow()
    new_jti = secrets.token_urlsafe(32)
    expires = _refresh_expiry(now)
    # One statement checks and spends the token, so that of two requests presenting it at
    # once, only one can succeed.
    rotated = await db.exec(
        update(UserSession)
        .where(
            col(UserSession.id) == session_id,
            col(UserSession.user_id) == user_id,
            col(UserSession.refresh_token_hash) == digest(jti),
            col(UserSession.ended_at).is_(None),
            col(UserSession.refresh_expires_at) > now,
            col(UserSession.user_id).in_(select(User.id).where(col(User.is_active))),
        )
        .values(refresh_token_hash=digest(new_jti), refresh_expires_at=expires, last_used_at=now)
    )
    if rotated.rowcount == 1:
        await db.commit()
        return _token_pair(user_id, session_id, new_jti, expires)
    # We signed this token for this session, so it was spent before (or the session has
    # ended already): whoever holds the session's tokens, it ends now.
    await end_sessions(db, user_id, only=session_id)
    await db.commit()
    return None


async def end_sessions(
    db: AsyncSession, user_id: int, *, only: int | None = None, keep: int | None = None
) -> int:
    """End the user's live sessions (just `only`, or all but `keep`); the caller commits.

    Returns how many ended.
    """
    statement = update(UserSession).where(
        col(UserSession.user_id) == user_id, col(UserSession.ended_at).is_(None)
    )
    if only is not None:
        statement = statement.where(col(UserSession.id) == only)
    if keep is not None:
        statement = statement.where(col(UserSession.id) != keep)
    result = await db.exec(statement.values(ended_at=utcnow()))
    return int(result.rowcount)


async def end_session(db: AsyncSession, user_id: int, session_id: int) -> None:
    """End one of the user's live sessions; NotFoundError if they have no such session."""
    ended = await end_sessions(db, user_id, only=session_id)
    await db.commit()
    if not ended:
        raise SessionNotFoundError


async def end_all_sessions(db: AsyncSession, user_id: int) -> None:
    await end_sessions(db, user_id)
    await db.commit()


async def list_sessions(db: AsyncSession, user_id: int, current_id: int) -> SessionsPublic:
    """The user's live sessions, the most recently used first."""
    statement = (
        select(UserSession)
        .where(
            col(UserSession.user_id) == user_id,
            col(UserSession.ended_at).is_(None),
            or_(col(UserSession.refresh_expires_at) > utcnow(), col(UserSession.id) == current_id),
        )
        .order_by(col(UserSession.last_used_at).desc(), col(UserSession.id).desc())
    )
    sessions = (await db.exec(statement)).all()
    data = [
        SessionPublic.model_validate(session, update={"current": session.id == current_id})
        for session in sessions
    ]
    return SessionsPublic(data=data, count=len(data))
