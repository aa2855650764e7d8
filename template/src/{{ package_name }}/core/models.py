"""What every table model shares. Import this module before defining any table."""

from datetime import UTC, datetime
from typing import Annotated

import pydantic
from pydantic import AfterValidator
from sqlalchemy import DateTime
from sqlmodel import Field, SQLModel
from sqlmodel._compat import SQLModelConfig

# Constraint names must be stable so that migrations can find them again, and batch
# mode on SQLite needs a name for every constraint. This must run before any table model
# is defined, which is why each domain's models module imports this one first.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Ids are 32-bit integer columns: a larger number cannot name a row.
MAX_ID = 2**31 - 1


def utcnow() -> datetime:
    return datetime.now(UTC)


def _as_utc(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything stored is UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def no_nul(value: str) -> str:
    # PostgreSQL cannot store NUL in text, so refuse it on every database alike; nor can a
    # database store half of a UTF-16 surrogate pair, which JSON can carry.
    if "\x00" in value:
        msg = "must not contain NUL characters"
        raise ValueError(msg)
    try:
        value.encode()
    except UnicodeEncodeError:
        msg = "must be valid Unicode text (no lone surrogates)"
        raise ValueError(msg) from None
    return value


# Every write model refuses unknown fields.
WRITE_MODEL_CONFIG = SQLModelConfig(extra="forbid")

UTCDateTime = Annotated[datetime, AfterValidator(_as_utc)]
# The pattern tells the API schema's readers (and fuzzers) what no_nul enforces.
Text = Annotated[
    str, AfterValidator(no_nul), pydantic.Field(json_schema_extra={"pattern": "^[^\\x00]*$"})
]

# A field's rule is one alias, e.g. `Title = Annotated[Text, pydantic.Field(max_length=255)]`,
# used by the table model (through its base) and the request models alike. Two details let
# SQLModel size the column from it: the length is given with pydantic.Field (SQLModel does
# not read StringConstraints' max_length), and a nullable field's alias holds the None
# (`Annotated[Text | None, ...]`: SQLModel reads no length from inside `Alias | None`).


def timestamp_field() -> datetime:
    return Field(default_factory=utcnow, sa_type=DateTime(timezone=True))  # type: ignore[no-any-return]
