from typing import Annotated

from fastapi import Depends, HTTPException, status
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy import bindparam
from sqlmodel import select

from ..core.db import SessionDep
from ..core.security import read_access_token
from ..users.models import User

# Built once: session.get would build and cache-key a new SELECT on every request.
_USER_BY_ID = select(User).where(User.id == bindparam("user_id"))

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token")


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail=detail,
        headers={"WWW-Authenticate": "Bearer"},
    )


async def get_current_user(
    session: SessionDep, token: Annotated[str, Depends(oauth2_scheme)]
) -> User:
    user_id = read_access_token(token)
    if user_id is None:
        raise _unauthorized("Could not validate credentials")
    user = (await session.exec(_USER_BY_ID, params={"user_id": user_id})).first()
    if user is None:
        raise _unauthorized("Could not validate credentials")
    if not user.is_active:
        raise HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail="Inactive user")
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


async def get_current_superuser(user: CurrentUser) -> User:
    if not user.is_superuser:
        raise HTTPException(
            status_code=status.HTTP_403_FORBIDDEN, detail="Superuser privileges required"
        )
    return user


SuperUser = Annotated[User, Depends(get_current_superuser)]
