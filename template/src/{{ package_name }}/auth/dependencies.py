from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, status
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy import bindparam
from sqlmodel import col, select

from ..core.db import SessionDep
from ..core.security import read_access_token
from ..users.models import User
from .sessions import UserSession

# Built once: session.get would build and cache-key a new SELECT on every request. The
# user comes back only while the token's session lives: one statement checks both.
_USER_OF_LIVE_SESSION = select(User).where(
    col(User.id) == bindparam("user_id"),
    select(UserSession.id)
    .where(
        col(UserSession.id) == bindparam("session_id"),
        col(UserSession.user_id) == User.id,
        col(UserSession.ended_at).is_(None),
    )
    .exists(),
)

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token")
optional_oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail=detail,
        headers={"WWW-Authenticate": "Bearer"},
    )


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent the request: the signed-in user and the session their token belongs to."""

    user: User
    session_id: int


async def _caller_of(session: SessionDep, token: str) -> Caller:
    claims = read_access_token(token)
    if claims is None:
        raise _unauthorized("Could not validate credentials")
    user_id, session_id = claims
    params = {"user_id": user_id, "session_id": session_id}
    user = (await session.exec(_USER_OF_LIVE_SESSION, params=params)).first()
    if user is None:
        raise _unauthorized("Could not validate credentials")
    if not user.is_active:
        raise HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail="Inactive user")
    return Caller(user=user, session_id=session_id)


async def get_current_caller(
    session: SessionDep, token: Annotated[str, Depends(oauth2_scheme)]
) -> Caller:
    return await _caller_of(session, token)


CurrentCaller = Annotated[Caller, Depends(get_current_caller)]


async def get_current_user(caller: CurrentCaller) -> User:
    return caller.user


CurrentUser = Annotated[User, Depends(get_current_user)]


async def get_optional_caller(
    session: SessionDep, token: Annotated[str | None, Depends(optional_oauth2_scheme)]
) -> Caller | None:
    """The caller where a token came with the request (it must be valid), else None."""
    return None if token is None else await _caller_of(session, token)


OptionalCaller = Annotated[Caller | None, Depends(get_optional_caller)]


async def get_current_superuser(user: CurrentUser) -> User:
    if not user.is_superuser:
        raise HTTPException(
            status_code=status.HTTP_403_FORBIDDEN, detail="Superuser privileges required"
        )
    return user


SuperUser = Annotated[User, Depends(get_current_superuser)]
