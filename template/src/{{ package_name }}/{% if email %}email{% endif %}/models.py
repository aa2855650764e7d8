"""Email's tables: the outbox of mails to deliver, the mailed tokens, and mail counts."""

from datetime import datetime
from typing import Literal

from sqlalchemy import DateTime, Text
from sqlmodel import Field, SQLModel

from ..core.models import timestamp_field

TokenPurpose = Literal["verify_email", "reset_password"]


class OutboxMail(SQLModel, table=True):
    """A mail waiting to be delivered; deleted once the SMTP server accepted it."""

    __tablename__ = "email_outbox"
    __table_args__ = {"sqlite_autoincrement": True}

    id: int | None = Field(default=None, primary_key=True)
    recipient: str = Field(max_length=254)
    subject: str = Field(max_length=255)
    text_body: str = Field(sa_type=Text)
    html_body: str = Field(sa_type=Text)
    created_at: datetime = timestamp_field()
    # Due at this time; moved later after each failed attempt (backoff).
    next_attempt_at: datetime = Field(sa_type=DateTime(timezone=True), index=True)
    attempts: int = 0
    # A delivery loop that claimed the mail holds it until then (a lease): no other loop
    # takes it meanwhile, and should the holder die, another takes it afterwards.
    claimed_until: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    # Set when delivery is given up (the server refused the recipient for good, or too old).
    failed_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    last_error: str | None = Field(default=None, max_length=500)


class EmailToken(SQLModel, table=True):
    """A token mailed in a link: only its SHA-256 is kept; it works once, until it expires."""

    __tablename__ = "email_tokens"
    __table_args__ = {"sqlite_autoincrement": True}

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id", ondelete="CASCADE", index=True)
    purpose: str = Field(max_length=20)
    token_hash: str = Field(max_length=64, unique=True, index=True)
    # The address the token was mailed to: a verification holds only for that address.
    email: str = Field(max_length=254)
    created_at: datetime = timestamp_field()
    expires_at: datetime = Field(sa_type=DateTime(timezone=True))
    used_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class EmailRateLimit(SQLModel, table=True):
    """Mails asked for within the current hour, per recipient address or client address."""

    __tablename__ = "email_rate_limits"
    __table_args__ = {"sqlite_autoincrement": True}

    id: int | None = Field(default=None, primary_key=True)
    # "to:<sha256 of the address>", "change:<the same>" or "client:<client address>".
    key: str = Field(max_length=100, unique=True, index=True)
    count: int
    window_started_at: datetime = Field(sa_type=DateTime(timezone=True), index=True)
