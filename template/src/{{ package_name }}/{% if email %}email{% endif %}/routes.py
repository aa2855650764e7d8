from typing import Annotated

import pydantic
from fastapi import APIRouter, Request, status
from sqlmodel import SQLModel

from ..auth import throttle
from ..auth.dependencies import SIGNED_IN, CurrentUser
from ..core.db import SessionDep
from ..core.errors import responses
from ..core.models import WRITE_MODEL_CONFIG
from ..users.models import Email, Password
from . import limits, service
from .config import get_email_settings
from .outbox import delivery_lifespan

# Read at start, so that a service that could not send its mails refuses to start, saying why.
get_email_settings()

# Its lifespan delivers the outbox's mails in the background while the application serves.
router = APIRouter(lifespan=delivery_lifespan)

# What secrets.token_urlsafe makes: anything else cannot be a mailed token.
MailToken = Annotated[
    str, pydantic.Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")
]

INVALID_TOKEN = responses(service.InvalidTokenError)
TOO_MANY = responses(limits.TooManyMailsError)


class PasswordRecovery(SQLModel):
    model_config = WRITE_MODEL_CONFIG

    email: Email


class PasswordReset(SQLModel):
    model_config = WRITE_MODEL_CONFIG

    token: MailToken
    new_password: Password


class EmailVerification(SQLModel):
    model_config = WRITE_MODEL_CONFIG

    token: MailToken


class Accepted(SQLModel):
    message: str


def _client(request: Request) -> str | None:
    return throttle.address_key(request.client.host if request.client else None)


@router.post(
    "/auth/password-recovery",
    tags=["auth"],
    status_code=status.HTTP_202_ACCEPTED,
    responses=TOO_MANY,
)
async def recover_password(db: SessionDep, request: Request, body: PasswordRecovery) -> Accepted:
    """Mail a password-reset link, if an active account has this address.

    The answer is the same whether or not one does.
    """
    await service.request_password_recovery(db, body.email, _client(request))
    return Accepted(
        message="If an active account has this address, a link to reset its password is on its way"
    )


@router.post(
    "/auth/password-reset",
    tags=["auth"],
    status_code=status.HTTP_204_NO_CONTENT,
    responses=INVALID_TOKEN,
)
async def reset_password(db: SessionDep, body: PasswordReset) -> None:
    """Set a new password with a mailed token: every session of the account ends."""
    await service.reset_password(db, body.token, body.new_password)


@router.post(
    "/users/me/email-verification",
    tags=["users"],
    status_code=status.HTTP_202_ACCEPTED,
    responses=SIGNED_IN | TOO_MANY,
)
async def request_email_verification(
    db: SessionDep, request: Request, user: CurrentUser
) -> Accepted:
    """Mail a verification link to your account's address."""
    await service.request_verification(db, user, _client(request))
    return Accepted(message="A verification link is on its way to your address")


@router.post(
    "/auth/verify-email",
    tags=["auth"],
    status_code=status.HTTP_204_NO_CONTENT,
    responses=responses(service.InvalidTokenError, service.AddressChangedError),
)
async def verify_email(db: SessionDep, body: EmailVerification) -> None:
    await service.verify_email(db, body.token)
