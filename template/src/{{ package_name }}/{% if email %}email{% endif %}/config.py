"""Email's settings: SMTP, where links point, token lifetimes and how many mails may go out."""

import sys
from email.utils import parseaddr
from functools import lru_cache
from typing import Literal, Self

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ..core.config import format_settings_error

DEFAULT_PORTS = {"starttls": 587, "tls": 465, "none": 25}


class EmailSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", env_ignore_empty=True, extra="ignore"
    )

    ENVIRONMENT: Literal["local", "test", "production"] = "local"
    # No SMTP_HOST outside production: mails are written to the log instead.
    SMTP_HOST: str = ""
    # Defaults by SMTP_SECURITY: 587 (starttls), 465 (tls), 25 (none).
    SMTP_PORT: int | None = Field(default=None, ge=1, le=65535)
    SMTP_USERNAME: str = ""
    SMTP_PASSWORD: SecretStr = SecretStr("")
    SMTP_SECURITY: Literal["starttls", "tls", "none"] = "starttls"
    SMTP_TIMEOUT_SECONDS: float = Field(default=30.0, gt=0, le=600)
    EMAILS_FROM: str = "noreply@example.com"
    # Where the links in mails point (the web front end that calls this API).
    FRONTEND_URL: str = "http://localhost:3000"
    # When true, accounts whose address is unverified get 403 at sign-in (superusers never).
    USERS_REQUIRE_VERIFIED_EMAIL: bool = False
    PASSWORD_RESET_TOKEN_EXPIRE_MINUTES: int = Field(default=30, ge=1, le=24 * 60)
    EMAIL_VERIFICATION_TOKEN_EXPIRE_HOURS: int = Field(default=48, ge=1, le=30 * 24)
    # Mails asked for (recovery, verification) per hour, per address and per client.
    EMAILS_PER_ADDRESS_PER_HOUR: int = Field(default=3, ge=1, le=10_000)
    EMAILS_PER_CLIENT_PER_HOUR: int = Field(default=10, ge=1, le=100_000)

    @field_validator("EMAILS_FROM")
    @classmethod
    def check_sender(cls, sender: str) -> str:
        if "@" not in parseaddr(sender)[1]:
            msg = 'must be an address such as "noreply@example.com" or "Acme <noreply@acme.com>"'
            raise ValueError(msg)
        return sender

    @field_validator("FRONTEND_URL")
    @classmethod
    def check_frontend_url(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")) or "?" in url or "#" in url:
            msg = "must be an http:// or https:// URL without query or fragment"
            raise ValueError(msg)
        return url.rstrip("/")

    @model_validator(mode="after")
    def production_sends_over_smtp(self) -> Self:
        if self.ENVIRONMENT == "production" and not self.SMTP_HOST:
            msg = (
                "SMTP_HOST is missing; production delivers its mails (password recovery, "
                "verification, notices) over SMTP: set SMTP_HOST (and SMTP_PORT, SMTP_USERNAME, "
                "SMTP_PASSWORD, SMTP_SECURITY, EMAILS_FROM)"
            )
            raise ValueError(msg)
        return self

    @property
    def smtp_port(self) -> int:
        return self.SMTP_PORT or DEFAULT_PORTS[self.SMTP_SECURITY]


@lru_cache
def get_email_settings() -> EmailSettings:
    try:
        return EmailSettings()
    except ValidationError as error:
        print(format_settings_error(error), file=sys.stderr)
        raise SystemExit(2) from None
