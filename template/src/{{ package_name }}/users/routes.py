"""The /users routes: sign-up, the caller's own account and sessions (/me), and what superusers
do to any account (one router, so that the API document lists them as one group).
"""

from typing import Annotated

from fastapi import APIRouter, Path, Request, status

from ..auth import service as auth_service
from ..auth import sessions, throttle
from ..auth.dependencies import SIGNED_IN, CurrentCaller, CurrentUser, OptionalCaller, SuperUser
from ..core.config import get_settings
from ..core.db import SessionDep
from ..core.errors import (
    ForbiddenError,
    TooManyRequestsError,
    UnauthorizedError,
    UniqueViolationError,
    responses,
)
from ..core.models import MAX_ID
from ..core.openapi import TOKEN_OPTIONAL
from ..core.params import Limit, Offset
from . import service
from .models import UpdatePassword, UserCreate, UserPublic, UsersPublic, UserUpdate, UserUpdateMe

router = APIRouter(prefix="/users", tags=["users"])

UserId = Annotated[int, Path(ge=1, le=MAX_ID)]

# A unique index refuses a second account with a username or email already in use.
TakenError = UniqueViolationError.described("Username or email already taken")
SessionId = Annotated[int, Path(ge=1, le=MAX_ID)]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses=responses(TakenError, ForbiddenError, UnauthorizedError),
    # Anyone may sign up while registration is open, and a superuser's token counts.
    openapi_extra={TOKEN_OPTIONAL: True},
)
async def register_user(db: SessionDep, caller: OptionalCaller, user_in: UserCreate) -> UserPublic:
    """Sign up; or, for a superuser, create any account, whatever USERS_OPEN_REGISTRATION says."""
    by_superuser = caller is not None and caller.user.is_superuser
    if not by_superuser:
        if not get_settings().USERS_OPEN_REGISTRATION:
            raise ForbiddenError("Open registration is closed")
        if user_in.model_fields_set & {"is_active", "is_superuser"}:
            raise ForbiddenError("Only a superuser may set is_active or is_superuser")
    user = await service.create_user(db, user_in)
    return UserPublic.model_validate(user)


@router.get("/me", responses=SIGNED_IN)
async def read_me(user: CurrentUser) -> UserPublic:
    return UserPublic.model_validate(user)


@router.patch("/me", responses=SIGNED_IN | responses(TakenError))
async def update_me(db: SessionDep, user: CurrentUser, changes: UserUpdateMe) -> UserPublic:
    updated = await service.update_user(db, user, changes, end_sessions=sessions.end_sessions)
    return UserPublic.model_validate(updated)


@router.put(
    "/me/password",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=SIGNED_IN
    | responses(
        auth_service.WrongPasswordError,
        TooManyRequestsError.described("Too many failed password checks"),
    ),
)
async def change_my_password(
    db: SessionDep, caller: CurrentCaller, change: UpdatePassword, request: Request
) -> None:
    """Every other session of the user ends; this one goes on. Wrong current passwords are
    throttled like failed sign-ins."""
    await auth_service.change_password(
        db,
        caller.user,
        change,
        keep_session_id=caller.session_id,
        address=throttle.address_key(request.client.host if request.client else None),
    )


@router.delete(
    "/me",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=SIGNED_IN | responses(service.LastSuperuserError),
)
async def delete_me(db: SessionDep, user: CurrentUser) -> None:
    assert user.id is not None  # noqa: S101
    await service.delete_user(db, user.id)


@router.get("/me/sessions", responses=SIGNED_IN)
async def list_my_sessions(db: SessionDep, caller: CurrentCaller) -> sessions.SessionsPublic:
    """Your live sessions, the most recently used first; `current` marks this one."""
    assert caller.user.id is not None  # noqa: S101
    return await sessions.list_sessions(db, caller.user.id, caller.session_id)


@router.delete("/me/sessions", status_code=status.HTTP_204_NO_CONTENT, responses=SIGNED_IN)
async def end_my_sessions(db: SessionDep, caller: CurrentCaller) -> None:
    """End every session of yours, this one too."""
    assert caller.user.id is not None  # noqa: S101
    await sessions.end_all_sessions(db, caller.user.id)


@router.delete(
    "/me/sessions/{session_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=SIGNED_IN | responses(sessions.SessionNotFoundError),
)
async def end_my_session(db: SessionDep, caller: CurrentCaller, session_id: SessionId) -> None:
    assert caller.user.id is not None  # noqa: S101
    await sessions.end_session(db, caller.user.id, session_id)


@router.get("", responses=SIGNED_IN)
async def list_users(
    db: SessionDep, _: SuperUser, offset: Offset = 0, limit: Limit = 100
) -> UsersPublic:
    users, count = await service.list_users(db, offset=offset, limit=limit)
    return UsersPublic(data=[UserPublic.model_validate(user) for user in users], count=count)


@router.get("/{user_id}", responses=SIGNED_IN | responses(service.UserNotFoundError))
async def read_user(db: SessionDep, user: CurrentUser, user_id: UserId) -> UserPublic:
    if user.id == user_id:
        return UserPublic.model_validate(user)
    if not user.is_superuser:
        raise ForbiddenError("Not allowed to read other users")
    return UserPublic.model_validate(await service.get_user(db, user_id))


@router.patch(
    "/{user_id}",
    responses=SIGNED_IN
    | responses(service.UserNotFoundError, TakenError, service.LastSuperuserError),
)
async def update_user(
    db: SessionDep, _: SuperUser, user_id: UserId, changes: UserUpdate
) -> UserPublic:
    user = await service.get_user(db, user_id)
    updated = await service.update_user(db, user, changes, end_sessions=sessions.end_sessions)
    return UserPublic.model_validate(updated)


@router.delete(
    "/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=SIGNED_IN | responses(service.UserNotFoundError, service.LastSuperuserError),
)
async def delete_user(db: SessionDep, _: SuperUser, user_id: UserId) -> None:
    await service.delete_user(db, user_id)
