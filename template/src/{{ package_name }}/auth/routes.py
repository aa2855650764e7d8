from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.security import OAuth2PasswordRequestForm
from sqlmodel import SQLModel

from ..core.db import SessionDep
from ..core.security import create_access_token
from ..users.service import authenticate
from . import throttle

router = APIRouter(prefix="/auth", tags=["auth"])


class Token(SQLModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105 (not a secret)


@router.post(
    "/token",
    responses={
        status.HTTP_400_BAD_REQUEST: {"description": "Inactive user"},
        status.HTTP_401_UNAUTHORIZED: {"description": "Incorrect username or password"},
        status.HTTP_429_TOO_MANY_REQUESTS: {"description": "Too many failed sign-ins"},
        status.HTTP_503_SERVICE_UNAVAILABLE: {"description": "Too many password checks at once"},
    },
)
async def login_for_access_token(
    request: Request, session: SessionDep, form: Annotated[OAuth2PasswordRequestForm, Depends()]
) -> Token:
    address = throttle.address_key(request.client.host if request.client else None)
    user = await authenticate(session, form.username, form.password, address=address)
    if user is None:
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="Incorrect username or password",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not user.is_active:
        raise HTTPException(status_code=status.HTTP_400_BAD_REQUEST, detail="Inactive user")
    assert user.id is not None  # noqa: S101
    return Token(access_token=create_access_token(user.id))
