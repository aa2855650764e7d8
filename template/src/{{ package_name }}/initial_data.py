"""Create the first superuser from the FIRST_SUPERUSER_* settings; safe to run again.

uv run python -m <package>.initial_data
"""

import asyncio
import logging
import sys

from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError
from sqlmodel.ext.asyncio.session import AsyncSession

from .core.config import EXAMPLE_SECRET_KEYS, Settings, get_settings
from .core.db import SessionFactory, engine
from .users import service
from .users.models import User, UserCreate

logger = logging.getLogger(__name__)

# Passwords from examples (.env.example says changethis) and the first that anyone tries.
EXAMPLE_PASSWORDS = EXAMPLE_SECRET_KEYS | {
    "password", "password1", "admin", "administrator", "12345678", "123456789", "qwerty123"
}  # fmt: skip
MIN_PRODUCTION_PASSWORD_LENGTH = 12


class NotASuperuserError(Exception):
    """The configured account exists but is not an active superuser."""


async def create_first_superuser(db: AsyncSession, settings: Settings) -> tuple[User, bool]:
    """Returns the superuser and whether it was created now."""
    if not settings.FIRST_SUPERUSER_PASSWORD:
        msg = "FIRST_SUPERUSER_PASSWORD is not set (in the environment or .env)"
        raise ValueError(msg)
    if settings.ENVIRONMENT == "production":
        password = settings.FIRST_SUPERUSER_PASSWORD
        if password.lower() in EXAMPLE_PASSWORDS:
            msg = "FIRST_SUPERUSER_PASSWORD is an example value; production needs a strong one"
            raise ValueError(msg)
        if len(password) < MIN_PRODUCTION_PASSWORD_LENGTH:
            msg = (
                f"FIRST_SUPERUSER_PASSWORD is {len(password)} characters; production needs at "
                f"least {MIN_PRODUCTION_PASSWORD_LENGTH}"
            )
            raise ValueError(msg)
    user_in = UserCreate(
        username=settings.FIRST_SUPERUSER_USERNAME,
        email=settings.FIRST_SUPERUSER_EMAIL,
        password=settings.FIRST_SUPERUSER_PASSWORD,
    )
    by_name = await service.get_user_by_login(db, user_in.username)
    by_email = await service.get_user_by_login(db, user_in.email)
    if by_name is None and by_email is None:
        return await service.create_user(db, user_in, is_superuser=True), True
    if by_name is not None and by_email is not None and by_name.id != by_email.id:
        msg = (
            f"FIRST_SUPERUSER_USERNAME {user_in.username!r} is the account {by_name.username!r} "
            f"and FIRST_SUPERUSER_EMAIL {user_in.email!r} belongs to another one "
            f"({by_email.username!r}): set both to the same account, or to a new one"
        )
        raise NotASuperuserError(msg)
    existing = by_name or by_email
    assert existing is not None  # noqa: S101
    if existing.is_superuser and existing.is_active:
        return existing, False
    what = "is deactivated" if not existing.is_active else "is an ordinary user"
    msg = (
        f"The account {existing.username!r} ({existing.email}) exists but is not an active "
        f"superuser: it {what}. Have a superuser make it one (PATCH /api/v1/users/"
        f"{existing.id} with is_superuser and is_active true), or set FIRST_SUPERUSER_USERNAME "
        "and FIRST_SUPERUSER_EMAIL to a new account"
    )
    raise NotASuperuserError(msg)


async def main() -> int:
    settings = get_settings()
    try:
        async with SessionFactory() as db:
            user, created = await create_first_superuser(db, settings)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors(include_url=False)
        )
        logger.error("The FIRST_SUPERUSER_* settings are invalid: %s", problems)
        return 2
    except ValueError as error:
        logger.error("%s", error)
        return 2
    except NotASuperuserError as error:
        logger.error("%s", error)
        return 1
    except (DBAPIError, OSError) as error:
        logger.error(
            "Cannot use the database (%s). Is it running, and did you run "
            "`alembic upgrade head`? %s",
            settings.DATABASE_URL.split("@")[-1],
            str(error).splitlines()[0],
        )
        return 1
    finally:
        await engine.dispose()
    if created:
        logger.info("Created superuser %r", user.username)
    else:
        logger.info("Superuser %r already exists; nothing to do", user.username)
    return 0


if __name__ == "__main__":
    # This script's own messages only: at INFO the libraries would add theirs, among them
    # SQLAlchemy's pool saying "Pool disposed" and "Pool recreating" at engine.dispose().
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logger.setLevel(logging.INFO)
    sys.exit(asyncio.run(main()))
