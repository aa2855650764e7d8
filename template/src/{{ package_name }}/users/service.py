from typing import Any

from sqlalchemy import func, or_
from sqlmodel import col, delete, select
from sqlmodel.ext.asyncio.session import AsyncSession

from ..core.errors import NotFoundError, ServiceError
from ..core.security import hash_password, verify_password
from .models import UpdatePassword, User, UserCreate, UserUpdate, UserUpdateMe

MAX_LOGIN_LENGTH = 254


class WrongPasswordError(ServiceError):
    pass


async def get_user(session: AsyncSession, user_id: int) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise NotFoundError("User not found")
    return user


async def get_user_by_login(session: AsyncSession, login: str) -> User | None:
    """The user whose username, or email ignoring case, is `login`."""
    statement = select(User).where(
        or_(col(User.username) == login, col(User.email) == login.lower())
    )
    return (await session.exec(statement)).first()


async def authenticate(session: AsyncSession, login: str, password: str) -> User | None:
    # A login no account can have is not looked up, but still costs one verification.
    plausible = 0 < len(login) <= MAX_LOGIN_LENGTH and "\x00" not in login
    user = await get_user_by_login(session, login) if plausible else None
    valid, new_hash = await verify_password(password, user.hashed_password if user else None)
    if user is None or not valid:
        return None
    if new_hash is not None:
        # The hashing parameters changed since this password was stored: upgrade it.
        user.hashed_password = new_hash
        session.add(user)
        await session.commit()
    return user


async def create_user(
    session: AsyncSession, user_in: UserCreate, *, is_superuser: bool = False
) -> User:
    user = User.model_validate(
        user_in,
        update={
            "hashed_password": await hash_password(user_in.password),
            "is_superuser": is_superuser,
        },
    )
    session.add(user)
    await session.commit()
    return user


async def list_users(session: AsyncSession, *, offset: int, limit: int) -> tuple[list[User], int]:
    count = await session.scalar(select(func.count()).select_from(User))
    page = select(User).order_by(col(User.id)).offset(offset).limit(limit)
    return list((await session.exec(page)).all()), count or 0


async def update_user(session: AsyncSession, user: User, changes: UserUpdateMe) -> User:
    values: dict[str, Any] = changes.model_dump(exclude_unset=True)
    if "password" in values:
        values["hashed_password"] = await hash_password(values.pop("password"))
    user.sqlmodel_update(values)
    session.add(user)
    await session.commit()
    return user


async def change_password(session: AsyncSession, user: User, change: UpdatePassword) -> None:
    valid, _ = await verify_password(change.current_password, user.hashed_password)
    if not valid:
        raise WrongPasswordError("Current password is incorrect")
    await update_user(session, user, UserUpdate(password=change.new_password))


async def delete_user(session: AsyncSession, user_id: int) -> None:
    # The database deletes whatever the user owns with them (ON DELETE CASCADE).
    result = await session.exec(delete(User).where(col(User.id) == user_id))
    await session.commit()
    if result.rowcount == 0:
        raise NotFoundError("User not found")
