from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy import Table, bindparam, exists, inspect, select
from sqlalchemy.orm import configure_mappers, make_transient_to_detached

from ..core.errors import ForbiddenError, UnauthorizedError, responses
from ..core.hot_read import HotRead
from ..core.tokens import read_access_token
from ..users.models import User
from .sessions import UserSession

# The user of a live session, read on every signed-in request (core/hot_read.py): every
# column of the users table, so it follows the model. The user comes back only while the
# token's session lives: one statement checks both.
_USERS: Table = User.__table__  # type: ignore[attr-defined]
_SESSIONS: Table = UserSession.__table__  # type: ignore[attr-defined]
_USER_OF_LIVE_SESSION = HotRead(
    select(*_USERS.columns).where(
        _USERS.c.id == bindparam("user_id"),
        exists().where(
            _SESSIONS.c.id == bindparam("session_id"),
            _SESSIONS.c.user_id == _USERS.c.id,
            _SESSIONS.c.ended_at.is_(None),
        ),
    )
)

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token")
optional_oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)


class NotSignedInError(UnauthorizedError):
    description = "Missing, invalid or expired token"


class InactiveUserError(ForbiddenError):
    description = "Inactive user"


class NotSuperuserError(ForbiddenError):
    description = "Superuser privileges required"


# What a route that needs a signed-in user can answer besides its own errors.
SIGNED_IN = responses(NotSignedInError, InactiveUserError, ForbiddenError)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent the request: the signed-in user and the session their token belongs to."""

    user: User
    session_id: int


def _user_from_row(row: Sequence[Any]) -> User:
    """A User as the ORM would load it, detached: a route's db session takes it in with add().

    Built as the ORM builds loaded objects (no validation, no change history), without its
    per-row machinery; any column the users table has becomes its attribute.
    """
    global _user_attributes
    mapper = inspect(User)
    if not _user_attributes:
        configure_mappers()
        _user_attributes = tuple(mapper.get_property_by_column(c).key for c in _USERS.columns)
    user: User = mapper.class_manager.new_instance()
    user.__dict__.update(zip(_user_attributes, row, strict=True))
    make_transient_to_detached(user)
    return user


_user_attributes: tuple[str, ...] = ()


async def _caller_of(token: str) -> Caller:
    claims = read_access_token(token)
    if claims is None:
        raise NotSignedInError("Could not validate credentials")
    user_id, session_id = claims
    row = await _USER_OF_LIVE_SESSION.first(user_id=user_id, session_id=session_id)
    if row is None:
        raise NotSignedInError("Could not validate credentials")
    user = _user_from_row(row)
    if not user.is_active:
        raise InactiveUserError
    return Caller(user=user, session_id=session_id)


# Each of these reads the caller itself, before the route's database session starts: a
# route takes one of them, never two.


async def get_current_caller(token: Annotated[str, Depends(oauth2_scheme)]) -> Caller:
    return await _caller_of(token)


CurrentCaller = Annotated[Caller, Depends(get_current_caller)]


async def get_current_user(token: Annotated[str, Depends(oauth2_scheme)]) -> User:
    return (await _caller_of(token)).user


CurrentUser = Annotated[User, Depends(get_current_user)]


async def get_optional_caller(
    token: Annotated[str | None, Depends(optional_oauth2_scheme)],
) -> Caller | None:
    """The caller where a token came with the request (it must be valid), else None."""
    return None if token is None else await _caller_of(token)


OptionalCaller = Annotated[Caller | None, Depends(get_optional_caller)]


async def get_current_superuser(user: CurrentUser) -> User:
    if not user.is_superuser:
        raise NotSuperuserError
    return user


SuperUser = Annotated[User, Depends(get_current_superuser)]
