"""Tokens mailed in links: random, kept only as a SHA-256, single-use, short-lived."""

import secrets
from datetime import timedelta

from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from ..core.models import utcnow
from ..core.tokens import digest
from .models import EmailToken, TokenPurpose


async def issue_token(
    db: AsyncSession, *, user_id: int, email: str, purpose: TokenPurpose, lifetime: timedelta
) -> str:
    """A new token for the user, added to the caller's transaction; returns the secret."""
    secret = secrets.token_urlsafe(32)
    now = utcnow()
    db.add(
        EmailToken(
            user_id=user_id,
            purpose=purpose,
            token_hash=digest(secret),
            email=email,
            created_at=now,
            expires_at=now + lifetime,
        )
    )
    return secret


def _usable(secret: str, purpose: TokenPurpose) -> list[object]:
    return [
        col(EmailToken.token_hash) == digest(secret),
        col(EmailToken.purpose) == purpose,
        col(EmailToken.used_at).is_(None),
        col(EmailToken.expires_at) > utcnow(),
    ]


async def find_token(db: AsyncSession, secret: str, purpose: TokenPurpose) -> EmailToken | None:
    """The unused, unexpired token with this secret, without spending it."""
    statement = select(EmailToken).where(*_usable(secret, purpose))  # type: ignore[arg-type]
    return (await db.exec(statement)).first()


async def spend_token(db: AsyncSession, secret: str, purpose: TokenPurpose) -> bool:
    """Mark the token used, in the caller's transaction; False if it was not usable.

    One statement checks and spends it: of two requests presenting it at once, one wins.
    """
    result = await db.exec(
        update(EmailToken)
        .where(*_usable(secret, purpose))  # type: ignore[arg-type]
        .values(used_at=utcnow())
        # SQLite's naive datetimes cannot be compared in Python with the loaded token's.
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount) == 1
