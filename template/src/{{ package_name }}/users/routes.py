from typing import Annotated

from fastapi import APIRouter, Path, status

from ..auth.dependencies import CurrentUser, SuperUser
from ..core.config import get_settings
from ..core.db import SessionDep
from ..core.errors import ForbiddenError
from ..core.models import MAX_ID
from ..core.params import SIGNED_IN, Limit, Offset, Responses
from . import service
from .models import UpdatePassword, UserCreate, UserPublic, UsersPublic, UserUpdate, UserUpdateMe

router = APIRouter(prefix="/users", tags=["users"])

UserId = Annotated[int, Path(ge=1, le=MAX_ID)]

NOT_FOUND: Responses = {status.HTTP_404_NOT_FOUND: {"description": "User not found"}}
TAKEN: Responses = {status.HTTP_409_CONFLICT: {"description": "Username or email already taken"}}
FORBIDDEN: Responses = {status.HTTP_403_FORBIDDEN: {"description": "Not allowed"}}


@router.post("", status_code=status.HTTP_201_CREATED, responses={**TAKEN, **FORBIDDEN})
async def register_user(session: SessionDep, user_in: UserCreate) -> UserPublic:
    if not get_settings().USERS_OPEN_REGISTRATION:
        raise ForbiddenError("Open registration is closed")
    user = await service.create_user(session, user_in)
    return UserPublic.model_validate(user)


@router.get("/me", responses=SIGNED_IN)
async def read_me(user: CurrentUser) -> UserPublic:
    return UserPublic.model_validate(user)


@router.patch("/me", responses={**SIGNED_IN, **TAKEN})
async def update_me(session: SessionDep, user: CurrentUser, changes: UserUpdateMe) -> UserPublic:
    return UserPublic.model_validate(await service.update_user(session, user, changes))


@router.put(
    "/me/password",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={
        **SIGNED_IN,
        status.HTTP_400_BAD_REQUEST: {"description": "Current password is incorrect"},
    },
)
async def change_my_password(
    session: SessionDep, user: CurrentUser, change: UpdatePassword
) -> None:
    await service.change_password(session, user, change)


@router.delete("/me", status_code=status.HTTP_204_NO_CONTENT, responses=SIGNED_IN)
async def delete_me(session: SessionDep, user: CurrentUser) -> None:
    assert user.id is not None  # noqa: S101
    await service.delete_user(session, user.id)


@router.get("", responses=SIGNED_IN)
async def list_users(
    session: SessionDep, _: SuperUser, offset: Offset = 0, limit: Limit = 100
) -> UsersPublic:
    users, count = await service.list_users(session, offset=offset, limit=limit)
    return UsersPublic(data=[UserPublic.model_validate(user) for user in users], count=count)


@router.get("/{user_id}", responses={**SIGNED_IN, **NOT_FOUND})
async def read_user(session: SessionDep, user: CurrentUser, user_id: UserId) -> UserPublic:
    if user.id == user_id:
        return UserPublic.model_validate(user)
    if not user.is_superuser:
        raise ForbiddenError("Not allowed to read other users")
    return UserPublic.model_validate(await service.get_user(session, user_id))


@router.patch("/{user_id}", responses={**SIGNED_IN, **NOT_FOUND, **TAKEN})
async def update_user(
    session: SessionDep, _: SuperUser, user_id: UserId, changes: UserUpdate
) -> UserPublic:
    user = await service.get_user(session, user_id)
    return UserPublic.model_validate(await service.update_user(session, user, changes))


@router.delete(
    "/{user_id}", status_code=status.HTTP_204_NO_CONTENT, responses={**SIGNED_IN, **NOT_FOUND}
)
async def delete_user(session: SessionDep, _: SuperUser, user_id: UserId) -> None:
    await service.delete_user(session, user_id)
