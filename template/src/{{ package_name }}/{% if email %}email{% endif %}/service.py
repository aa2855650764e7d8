"""Password recovery and reset, and address verification: the flows behind email's routes."""

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from ..auth.sessions import end_sessions
from ..core.errors import ServiceError
from ..core.passwords import hash_password
from ..users.models import User
from ..users.service import release_connection
from . import limits
from .config import get_email_settings
from .mails import mail_password_changed, mail_password_recovery, mail_verification
from .tokens import find_token, spend_token


class InvalidTokenError(ServiceError):
    description = "Unknown, used or expired token"


class AddressChangedError(InvalidTokenError):
    description = "One for an address the account no longer has"


INVALID_TOKEN = "Invalid, used or expired token"  # noqa: S105 (a message)


def _limits(email: str, address: str | None) -> dict[str, int]:
    settings = get_email_settings()
    keys = {limits.recipient_key(email): settings.EMAILS_PER_ADDRESS_PER_HOUR}
    if (client := limits.client_key(address)) is not None:
        keys[client] = settings.EMAILS_PER_CLIENT_PER_HOUR
    return keys


async def request_password_recovery(db: AsyncSession, email: str, address: str | None) -> None:
    """Mail a reset link if an active account has `email`; the same work and answer if none."""
    await limits.refuse_past_limit(db, _limits(email, address))
    statement = select(User).where(col(User.email) == email.lower())
    user = (await db.exec(statement)).first()
    active = user is not None and user.is_active
    await mail_password_recovery(
        db,
        user_id=user.id if user is not None and active else None,
        email=email,
        username=user.username if user is not None and active else "",
    )
    await db.commit()


async def reset_password(db: AsyncSession, token: str, new_password: str) -> None:
    """Set the password of the token's account, end every session of it, mail a notice."""
    found = await find_token(db, token, "reset_password")
    user = None if found is None else await db.get(User, found.user_id)
    if user is None or not user.is_active:
        raise InvalidTokenError(INVALID_TOKEN)
    # No connection held while the password is hashed (which may queue).
    await release_connection(db)
    hashed = await hash_password(new_password)
    # Spent only now, in the transaction that sets the password: of two requests with the
    # same token, one sets it.
    if not await spend_token(db, token, "reset_password"):
        await db.rollback()
        raise InvalidTokenError(INVALID_TOKEN)
    assert user.id is not None  # noqa: S101
    user.hashed_password = hashed
    # The link reached the account's address: that proves the address, if it still is.
    if found is not None and found.email == user.email:
        user.email_verified = True
    db.add(user)
    await end_sessions(db, user.id)
    mail_password_changed(db, email=user.email, username=user.username)
    await db.commit()


async def request_verification(db: AsyncSession, user: User, address: str | None) -> None:
    assert user.id is not None  # noqa: S101
    await limits.refuse_past_limit(db, _limits(user.email, address))
    await mail_verification(
        db, user_id=user.id, email=user.email, username=user.username, limited=False
    )
    await db.commit()


async def verify_email(db: AsyncSession, token: str) -> None:
    found = await find_token(db, token, "verify_email")
    user = None if found is None else await db.get(User, found.user_id)
    if found is None or user is None:
        raise InvalidTokenError(INVALID_TOKEN)
    if user.email != found.email:
        raise AddressChangedError("This link is for an address the account no longer has")
    if not await spend_token(db, token, "verify_email"):
        await db.rollback()
        raise InvalidTokenError(INVALID_TOKEN)
    user.email_verified = True
    db.add(user)
    await db.commit()
