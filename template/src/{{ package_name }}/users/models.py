import re
from datetime import datetime
from typing import Annotated

import pydantic
from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, StrictBool, StringConstraints, field_validator
from sqlalchemy import CheckConstraint, Index, func
from sqlmodel import Field, SQLModel, col

from ..core.models import WRITE_MODEL_CONFIG, Text, UTCDateTime, no_nul, timestamp_field

USERNAME_PATTERN = r"^[A-Za-z0-9_.-]+$"
USERNAME_RE = re.compile(USERNAME_PATTERN)

Username = Annotated[str, StringConstraints(min_length=3, max_length=32, pattern=USERNAME_PATTERN)]


def email_address(value: str) -> str:
    """The address in normal form, lower-cased.

    Stored lower-case, so that the unique index makes addresses unique ignoring case.
    Addresses at *.test domains are accepted: teams use them in development and tests.
    """
    try:
        address = validate_email(value, check_deliverability=False, test_environment=True)
    except EmailNotValidError as error:
        msg = f"is not a valid email address: {error}"
        raise ValueError(msg) from None
    return address.normalized.lower()


Email = Annotated[
    str,
    StringConstraints(max_length=254),
    AfterValidator(email_address),
    pydantic.Field(json_schema_extra={"format": "email"}),
]
FullName = Annotated[Text, StringConstraints(max_length=255)]
MAX_PASSWORD_LENGTH = 128
Password = Annotated[str, StringConstraints(min_length=8, max_length=MAX_PASSWORD_LENGTH)]


class UserBase(SQLModel):
    # Unique ignoring case: see User's index.
    username: str = Field(min_length=3, max_length=32)
    email: str = Field(max_length=254, unique=True, index=True)
    full_name: str | None = Field(default=None, max_length=255)

    @field_validator("username")
    @classmethod
    def check_username_characters(cls, username: str) -> str:
        if not USERNAME_RE.fullmatch(username):
            msg = "may hold only letters A-Z and a-z, digits, '_', '.' and '-'"
            raise ValueError(msg)
        return username

    @field_validator("email")
    @classmethod
    def check_email(cls, email: str) -> str:
        return email_address(email)

    @field_validator("full_name")
    @classmethod
    def refuse_nul(cls, full_name: str | None) -> str | None:
        return None if full_name is None else no_nul(full_name)


class User(UserBase, table=True):
    __tablename__ = "users"
    __table_args__ = (
        # The database holds the case rule too, so no writer can bypass it.
        CheckConstraint("email = lower(email)", name="email_lower_case"),
        # AUTOINCREMENT: SQLite would otherwise give a deleted user's id to the next one,
        # and with it whatever still names that id (a token, a link).
        {"sqlite_autoincrement": True},
    )

    id: int | None = Field(default=None, primary_key=True)
    hashed_password: str = Field(max_length=255)
    is_active: bool = True
    is_superuser: bool = False
    created_at: datetime = timestamp_field()


# `Admin` and `admin` are one name: usernames keep their case but are unique, and looked up,
# ignoring it (they are ASCII, where lower() agrees on every database).
Index("ix_users_username_lower", func.lower(col(User.username)), unique=True)


class UserCreate(UserBase):
    model_config = WRITE_MODEL_CONFIG

    # The same rules as UserBase's, in a form the API schema can describe.
    username: Username
    email: Email
    full_name: FullName | None = None

    password: Password
    # Only a superuser may send these (POST /users answers 403 to anyone else). Strict:
    # "yes", "true" or 1 is no boolean (422), so that no client's slip makes a superuser.
    is_active: StrictBool = Field(default=True, description="Superusers only")
    is_superuser: StrictBool = Field(default=False, description="Superusers only")


class UserUpdateMe(SQLModel):
    model_config = WRITE_MODEL_CONFIG

    # A field typed without None but defaulting to None may be left out, yet not set to
    # null: pydantic does not validate defaults.
    username: Username = Field(default=None)
    email: Email = Field(default=None)
    full_name: FullName | None = None


class UserUpdate(UserUpdateMe):
    """What a superuser may change on any account."""

    password: Password = Field(default=None)
    is_active: StrictBool = Field(default=None)
    is_superuser: StrictBool = Field(default=None)


class UpdatePassword(SQLModel):
    model_config = WRITE_MODEL_CONFIG

    current_password: Annotated[str, StringConstraints(max_length=128)]
    new_password: Password


class UserPublic(SQLModel):
    id: int
    username: str
    email: str
    full_name: str | None
    is_active: bool
    is_superuser: bool
    created_at: UTCDateTime


class UsersPublic(SQLModel):
    data: list[UserPublic]
    count: int
