from typing import Any

from sqlalchemy import func, or_
from sqlmodel import col, delete, select
from sqlmodel.ext.asyncio.session import AsyncSession

from ..auth import throttle
from ..auth.sessions import end_sessions
from ..core import security
from ..core.errors import ConflictError, NotFoundError, ServiceError
from ..core.security import hash_password, verify_password
from .models import MAX_PASSWORD_LENGTH, UpdatePassword, User, UserCreate, UserUpdate, UserUpdateMe

MAX_LOGIN_LENGTH = 254


class WrongPasswordError(ServiceError):
    pass


class LastSuperuserError(ConflictError):
    pass


LAST_SUPERUSER = (
    "This is the last active superuser: there must always be one, so make another user an "
    "active superuser first"
)


async def release_connection(session: AsyncSession) -> None:
    """Commit what was read so far, handing the session's connection back to the pool.

    Done before a password hash, which may wait in line and then takes ~100 ms: a pooled
    connection held meanwhile (idle in transaction) would starve every other request. The
    objects loaded stay usable (expire_on_commit=False); the next query takes a connection
    again.
    """
    await session.commit()


async def get_user(session: AsyncSession, user_id: int) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise NotFoundError("User not found")
    return user


async def get_user_by_login(session: AsyncSession, login: str) -> User | None:
    """The user whose username or email, ignoring case, is `login`.

    Folded as the sign-in throttle folds it (throttle.fold_login), so that both agree on
    which account a login names.
    """
    folded = throttle.fold_login(login)
    if folded.startswith(throttle.UNMATCHABLE):
        return None
    by_email = col(User.email) == folded
    # Usernames are ASCII: a login that is not cannot be one (and SQL's lower() would not
    # fold what str.lower() does).
    statement = select(User).where(
        or_(func.lower(col(User.username)) == folded, by_email) if folded.isascii() else by_email
    )
    return (await session.exec(statement)).first()


async def authenticate(
    session: AsyncSession, login: str, password: str, *, address: str | None = None
) -> User | None:
    """The user whose login and password these are, or None.

    Raises TooManyRequestsError (429) while the account or the client address `address`
    (throttle.address_key) is throttled, and BusyError (503) while password checking is at
    capacity. No database connection is held while the password is checked.
    """
    # A place in the hashing queue first: when it is full, refuse before any query.
    with security.hashing.place(sign_in=True):
        # A login no account can have is not looked up, but still costs one verification.
        plausible = 0 < len(login) <= MAX_LOGIN_LENGTH and "\x00" not in login
        user = await get_user_by_login(session, login) if plausible else None
        account = throttle.account_key(user.id if user else None, login)
        # Counts the attempt and commits, which hands the connection back to the pool
        # while the hash waits and runs (expire_on_commit=False keeps `user` usable).
        await throttle.admit(session, account=account, address=address)
        if len(password) > MAX_PASSWORD_LENGTH:
            valid, new_hash = False, None  # longer than any account's password
        else:
            stored = user.hashed_password if user else None
            valid, new_hash = await verify_password(password, stored)
    if user is None or not valid:
        await throttle.record_failure(session, address=address)
        return None
    await throttle.record_success(session, account=account, address=address)
    if new_hash is not None:
        # The hashing parameters changed since this password was stored: upgrade it.
        user.hashed_password = new_hash
        session.add(user)
    await session.commit()
    return user


async def create_user(
    session: AsyncSession, user_in: UserCreate, *, is_superuser: bool = False
) -> User:
    await release_connection(session)
    user = User.model_validate(
        user_in,
        update={
            "hashed_password": await hash_password(user_in.password),
            "is_superuser": is_superuser or user_in.is_superuser,
        },
    )
    session.add(user)
    await session.commit()
    return user


async def list_users(session: AsyncSession, *, offset: int, limit: int) -> tuple[list[User], int]:
    count = await session.scalar(select(func.count()).select_from(User))
    page = select(User).order_by(col(User.id)).offset(offset).limit(limit)
    return list((await session.exec(page)).all()), count or 0


async def update_user(
    session: AsyncSession,
    user: User,
    changes: UserUpdateMe,
    *,
    keep_session_id: int | None = None,
) -> User:
    """Apply the changes; a new password or a deactivation ends the user's sessions.

    Every session ends but `keep_session_id` (the caller's own, when they change their own
    password).
    """
    assert user.id is not None  # noqa: S101
    values: dict[str, Any] = changes.model_dump(exclude_unset=True)
    if "password" in values:
        await release_connection(session)
        values["hashed_password"] = await hash_password(values.pop("password"))
    loses_superuser = (
        user.is_superuser
        and user.is_active
        and (values.get("is_superuser") is False or values.get("is_active") is False)
    )
    superusers = await _lock_active_superusers(session) if loses_superuser else []
    user.sqlmodel_update(values)
    session.add(user)
    if "hashed_password" in values or values.get("is_active") is False:
        await end_sessions(session, user.id, keep=keep_session_id)
    await session.flush()
    if loses_superuser:
        await _refuse_to_leave_no_superuser(session, user.id, superusers)
    await session.commit()
    return user


async def change_password(
    session: AsyncSession,
    user: User,
    change: UpdatePassword,
    *,
    keep_session_id: int,
    address: str | None = None,
) -> None:
    """Change the user's own password; every other session of theirs ends.

    The current password is checked like a sign-in's, throttled alike: a stolen access
    token is no way around the sign-in throttle (TooManyRequestsError, 429).
    """
    # One place in the hashing queue for both hashes: a full queue refuses before either.
    with security.hashing.place():
        assert user.id is not None  # noqa: S101
        account = throttle.account_key(user.id, user.username)
        # Counts the attempt and commits, handing the connection back to the pool.
        await throttle.admit(session, account=account, address=address)
        valid, _ = await verify_password(change.current_password, user.hashed_password)
        if not valid:
            await throttle.record_failure(session, address=address)
            raise WrongPasswordError("Current password is incorrect")
        await throttle.record_success(session, account=account, address=address)
        await update_user(
            session, user, UserUpdate(password=change.new_password), keep_session_id=keep_session_id
        )


async def delete_user(session: AsyncSession, user_id: int) -> None:
    superusers = await _lock_active_superusers(session)
    # The database deletes whatever the user owns with them, sessions too (ON DELETE
    # CASCADE).
    result = await session.exec(delete(User).where(col(User.id) == user_id))
    if result.rowcount == 0:
        await session.rollback()
        raise NotFoundError("User not found")
    await _refuse_to_leave_no_superuser(session, user_id, superusers)
    await session.commit()


# There is always an active superuser: a change that would leave none is refused. Two
# superusers demoting each other at once must not both succeed, so the check runs after
# the change, in its transaction, and on PostgreSQL such changes queue on row locks of the
# active superusers (SQLite has one writer at a time anyway).


async def _lock_active_superusers(session: AsyncSession) -> list[int]:
    statement = select(User.id).where(col(User.is_superuser), col(User.is_active))
    rows = await session.exec(statement.with_for_update())
    return [user_id for user_id in rows.all() if user_id is not None]


async def _refuse_to_leave_no_superuser(
    session: AsyncSession, user_id: int, superusers: list[int]
) -> None:
    if user_id not in superusers:
        return
    remaining = await session.scalar(
        select(func.count()).select_from(User).where(col(User.is_superuser), col(User.is_active))
    )
    if not remaining:
        await session.rollback()
        raise LastSuperuserError(LAST_SUPERUSER)
