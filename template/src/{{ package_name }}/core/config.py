"""Settings: every environment variable the service reads, with its default and bounds, in one
class (one piece: one place to look a setting up). get_settings() gives the one instance.
"""

import json
import secrets
import sys
from functools import lru_cache
from typing import Annotated, Literal, Self

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Values that appear in examples and documentation: never acceptable in production.
EXAMPLE_SECRET_KEYS = frozenset(
    {"changethis", "change-me", "changeme", "secret", "your-secret-key"}
)
MIN_SECRET_KEY_LENGTH = 32

DRIVER_PREFIXES = ("postgresql+asyncpg://", "sqlite+aiosqlite://")
# A path of plain segments, such as /internal/metrics (none starting with a dot).
URL_PATH_PATTERN = r"^(/[A-Za-z0-9_~-][A-Za-z0-9_.~-]*)+$"
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", env_ignore_empty=True, extra="ignore"
    )

    ENVIRONMENT: Literal["local", "test", "production"] = "local"
    PROJECT_NAME: str = "FastAPI service"
    DATABASE_URL: str = "sqlite+aiosqlite:///./app.db"
    # Seconds. They bound how long a request can wait for an unreachable database.
    DATABASE_CONNECT_TIMEOUT: float = Field(default=5.0, gt=0, le=300)
    DATABASE_COMMAND_TIMEOUT: float = Field(default=30.0, gt=0, le=3600)
    DATABASE_POOL_TIMEOUT: float = Field(default=10.0, gt=0, le=300)
    DATABASE_POOL_SIZE: int = Field(default=10, ge=1, le=1000)
    DATABASE_MAX_OVERFLOW: int = Field(default=10, ge=0, le=1000)
    # Set when DATABASE_URL names PgBouncer in transaction mode.
    DATABASE_PGBOUNCER: bool = False
    SECRET_KEY: str = ""
    # Access tokens are short-lived; a refresh token (one per session) brings new ones.
    ACCESS_TOKEN_EXPIRE_MINUTES: int = Field(default=15, ge=1, le=60 * 24 * 365)
    REFRESH_TOKEN_EXPIRE_DAYS: int = Field(default=30, ge=1, le=3650)
    FIRST_SUPERUSER_USERNAME: str = "admin"
    FIRST_SUPERUSER_EMAIL: str = "admin@example.com"
    FIRST_SUPERUSER_PASSWORD: str = ""
    # A comma-separated list, or a JSON list.
    CORS_ORIGINS: Annotated[list[str], NoDecode] = []
    USERS_OPEN_REGISTRATION: bool = True
    # Larger request bodies get 413 before anything reads them.
    MAX_REQUEST_BODY_BYTES: int = Field(default=1024 * 1024, ge=1024, le=1024**3)
    # Sign-in throttling (auth/throttle.py). After this many consecutive failed sign-ins of
    # an account from one client address, that pair waits 1 s before the next attempt, twice
    # as long after each further failure, up to the maximum; a success ends the wait.
    SIGN_IN_ACCOUNT_FREE_FAILURES: int = Field(default=5, ge=1, le=10)
    SIGN_IN_ACCOUNT_MAX_WAIT_SECONDS: int = Field(default=15 * 60, ge=1, le=15 * 60)
    # After this many consecutive failures of an account over all addresses, the addresses
    # that failed it recently wait too (never one with no recent failure).
    SIGN_IN_ACCOUNT_MAX_FAILURES: int = Field(default=100, ge=10, le=1_000_000)
    # A client address with this many failed sign-ins within the window loses its free
    # failures until the window ends (it is never refused outright).
    SIGN_IN_ADDRESS_MAX_FAILURES: int = Field(default=100, ge=1, le=1_000_000)
    SIGN_IN_ADDRESS_WINDOW_SECONDS: int = Field(default=15 * 60, ge=1, le=24 * 60 * 60)
    # Password hashes that may wait for a hashing thread (one per CPU); beyond this,
    # sign-in, sign-up and password changes answer 503 at once ...
    PASSWORD_HASH_QUEUE_SIZE: int = Field(default=32, ge=0, le=100_000)
    # ... and so do they when a hash would wait longer than this many seconds.
    PASSWORD_HASH_MAX_WAIT_SECONDS: float = Field(default=5.0, gt=0, le=300)
    # Operating it (core/logging.py, core/metrics.py). LOG_FORMAT defaults to json in
    # production, console elsewhere. WEB_CONCURRENCY is read by uvicorn itself (worker
    # processes); it is declared here so that a bad value is named at start.
    LOG_LEVEL: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    LOG_FORMAT: Literal["json", "console"] | None = None
    METRICS_ENABLED: bool = True
    # Prometheus' text is served here (outside /api/v1; keep it off the public side of the
    # proxy, or move it). DOCS_ENABLED=false serves no /openapi.json, /docs nor /redoc.
    METRICS_PATH: str = Field(default="/metrics", pattern=URL_PATH_PATTERN)
    DOCS_ENABLED: bool = True
    WEB_CONCURRENCY: int = Field(default=1, ge=1, le=256)
    # Serving in production (python -m <package>, core/serving.py): where to listen, and the
    # proxies (comma-separated addresses or networks, or "*") trusted to tell the client's
    # address in X-Forwarded-For; none by default.
    HOST: str = "0.0.0.0"  # noqa: S104 (in a container, every interface is the point)
    PORT: int = Field(default=8000, ge=1, le=65535)
    FORWARDED_ALLOW_IPS: str = ""

    @model_validator(mode="after")
    def workers_share_one_secret_key(self) -> Self:
        # Each worker would otherwise sign with a random key of its own (see check_secret_key):
        # a token from one would be refused by the others.
        if self.WEB_CONCURRENCY > 1 and not self.SECRET_KEY:
            msg = f"SECRET_KEY must be set when WEB_CONCURRENCY is {self.WEB_CONCURRENCY}"
            raise ValueError(msg + ": every worker process must sign tokens with the same key")
        return self

    @field_validator("DATABASE_URL")
    @classmethod
    def use_an_async_driver(cls, url: str) -> str:
        # Accept the URLs that hosting providers hand out and pick the async driver for them.
        for plain in ("postgres://", "postgresql://"):
            if url.startswith(plain):
                return "postgresql+asyncpg://" + url.removeprefix(plain)
        if url.startswith("sqlite://"):
            return "sqlite+aiosqlite://" + url.removeprefix("sqlite://")
        if not url.startswith(DRIVER_PREFIXES):
            scheme = url.split("://", 1)[0] if "://" in url else url[:20]
            msg = (
                f"must start with postgresql+asyncpg:// or sqlite+aiosqlite:// (got {scheme!r}://…)"
            )
            raise ValueError(msg)
        return url

    @field_validator("LOG_LEVEL", "LOG_FORMAT", mode="before")
    @classmethod
    def log_settings_ignore_case(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        return value.upper() if value.lower() in LOG_LEVELS else value.lower()

    @field_validator("CORS_ORIGINS", mode="before")
    @classmethod
    def split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [origin.strip() for origin in text.split(",") if origin.strip()]
        return value

    @field_validator("CORS_ORIGINS", mode="after")
    @classmethod
    def strip_trailing_slashes(cls, origins: list[str]) -> list[str]:
        return [origin.rstrip("/") for origin in origins]

    @model_validator(mode="after")
    def check_secret_key(self) -> Self:
        key = self.SECRET_KEY
        if self.ENVIRONMENT == "production":
            if not key:
                msg = "SECRET_KEY is missing; production needs a long random value"
            elif key.lower() in EXAMPLE_SECRET_KEYS:
                msg = "SECRET_KEY is an example value; production needs a long random value"
            elif len(key) < MIN_SECRET_KEY_LENGTH:
                msg = (
                    f"SECRET_KEY is {len(key)} characters; production needs at least "
                    f"{MIN_SECRET_KEY_LENGTH}"
                )
            else:
                return self
            msg += ' (for example: python -c "import secrets; print(secrets.token_urlsafe(48))")'
            raise ValueError(msg)
        if not key:
            # Local and test runs work without configuration; tokens then last one process.
            self.SECRET_KEY = secrets.token_urlsafe(48)
        return self

    @model_validator(mode="after")
    def check_cors_origins(self) -> Self:
        # The API allows credentials from its origins: with "*" that would be any site.
        if self.ENVIRONMENT == "production" and "*" in self.CORS_ORIGINS:
            msg = 'CORS_ORIGINS may not be "*" in production: list the origins allowed to call'
            raise ValueError(msg + " the API with credentials")
        return self

    @property
    def log_format(self) -> Literal["json", "console"]:
        if self.LOG_FORMAT is not None:
            return self.LOG_FORMAT
        return "json" if self.ENVIRONMENT == "production" else "console"

    @property
    def is_sqlite(self) -> bool:
        return self.DATABASE_URL.startswith("sqlite")


def format_settings_error(error: ValidationError) -> str:
    lines = ["Invalid settings (from the environment or .env):"]
    for problem in error.errors(include_url=False, include_input=False):
        message = problem["msg"].removeprefix("Value error, ")
        if problem["loc"]:
            message = ".".join(str(part) for part in problem["loc"]) + ": " + message
        lines.append(f"  {message}")
    return "\n".join(lines)


@lru_cache
def get_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as error:
        # A configuration mistake is the user's, so say what is wrong without a traceback.
        print(format_settings_error(error), file=sys.stderr)
        raise SystemExit(2) from None
