from typing import Annotated, Literal, Self

from fastapi import APIRouter, Form, Request, Response, status
from pydantic import BaseModel, ConfigDict, model_validator
from pydantic.config import JsonDict

from ..core.db import SessionDep
from ..core.errors import BusyError, UnauthorizedError, responses
from . import throttle
from .dependencies import SIGNED_IN, CurrentCaller, InactiveUserError
from .service import authenticate
from .sessions import Token, end_sessions, refresh_session, start_session

router = APIRouter(prefix="/auth", tags=["auth"])

# Which fields each grant needs, in the form's one schema too (as a condition, not a choice
# of schemas, which generated clients would split into TokenRequestType0 and 1), so that
# clients (and fuzzers) reading the API schema know exactly what is accepted.
_GRANT_FIELDS: JsonDict = {
    "if": {
        "properties": {"grant_type": {"const": "refresh_token"}},
        "required": ["grant_type"],
    },
    "then": {"required": ["refresh_token"]},
    "else": {"required": ["username", "password"]},
}


class TokenRequest(BaseModel):
    """The OAuth 2.0 token request: a password grant (sign-in) or a refresh grant."""

    model_config = ConfigDict(json_schema_extra=_GRANT_FIELDS)

    grant_type: Literal["password", "refresh_token"] = "password"
    username: str | None = None
    password: str | None = None
    refresh_token: str | None = None
    # Sent by standard OAuth 2.0 clients; not used.
    scope: str = ""
    client_id: str | None = None
    client_secret: str | None = None

    @model_validator(mode="after")
    def check_grant_fields(self) -> Self:
        if self.grant_type == "password" and (self.username is None or self.password is None):
            msg = "grant_type=password needs username and password"
            raise ValueError(msg)
        if self.grant_type == "refresh_token" and self.refresh_token is None:
            msg = "grant_type=refresh_token needs refresh_token"
            raise ValueError(msg)
        return self


class SignInRefusedError(UnauthorizedError):
    description = (
        "Incorrect username or password; or an unknown, spent, expired or ended refresh token"
    )


@router.post(
    "/token",
    responses=responses(
        SignInRefusedError,
        InactiveUserError,
        throttle.SignInThrottledError,
        BusyError.described("Too many password checks at once"),
    ),
)
async def login_for_access_token(
    db: SessionDep,
    request: Request,
    response: Response,
    form: Annotated[TokenRequest, Form()],
) -> Token:
    # Tokens must not stay in any cache (RFC 6749, 5.1).
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    if form.grant_type == "refresh_token":
        assert form.refresh_token is not None  # noqa: S101 (the form's validator)
        pair = await refresh_session(db, form.refresh_token)
        if pair is None:
            raise SignInRefusedError("Invalid or expired refresh token")
        return pair
    assert form.username is not None  # noqa: S101
    assert form.password is not None  # noqa: S101
    address = throttle.address_key(request.client.host if request.client else None)
    user = await authenticate(db, form.username, form.password, address=address)
    if user is None:
        raise SignInRefusedError("Incorrect username or password")
    if not user.is_active:
        raise InactiveUserError
    return await start_session(db, user, request.headers.get("user-agent"))


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, responses=SIGNED_IN)
async def logout(db: SessionDep, caller: CurrentCaller) -> None:
    """End this session: its access and refresh tokens stop working."""
    assert caller.user.id is not None  # noqa: S101
    await end_sessions(db, caller.user.id, only=caller.session_id)
    await db.commit()
