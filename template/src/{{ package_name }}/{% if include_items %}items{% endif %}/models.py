from datetime import datetime
from typing import Annotated

from pydantic import StringConstraints, field_validator
from sqlmodel import Field, SQLModel

from ..core.models import WRITE_MODEL_CONFIG, Text, UTCDateTime, no_nul, timestamp_field

Title = Annotated[Text, StringConstraints(min_length=1, max_length=255)]
Description = Annotated[Text, StringConstraints(max_length=4000)]


class ItemBase(SQLModel):
    title: str = Field(min_length=1, max_length=255)
    description: str | None = Field(default=None, max_length=4000)

    @field_validator("title", "description")
    @classmethod
    def refuse_nul(cls, value: str | None) -> str | None:
        return None if value is None else no_nul(value)


class Item(ItemBase, table=True):
    __tablename__ = "items"
    # AUTOINCREMENT: SQLite would otherwise give a deleted item's id to the next one.
    __table_args__ = {"sqlite_autoincrement": True}

    id: int | None = Field(default=None, primary_key=True)
    owner_id: int = Field(foreign_key="users.id", ondelete="CASCADE", index=True)
    created_at: datetime = timestamp_field()
    updated_at: datetime = timestamp_field()


class ItemCreate(ItemBase):
    model_config = WRITE_MODEL_CONFIG

    # The same rules as ItemBase's, in a form the API schema can describe.
    title: Title
    description: Description | None = None


class ItemUpdate(SQLModel):
    model_config = WRITE_MODEL_CONFIG

    # Optional but never null: see users.models.
    title: Title = Field(default=None)
    description: Description | None = None


class ItemPublic(SQLModel):
    id: int
    title: str
    description: str | None
    owner_id: int
    created_at: UTCDateTime
    updated_at: UTCDateTime


class ItemsPublic(SQLModel):
    data: list[ItemPublic]
    count: int
