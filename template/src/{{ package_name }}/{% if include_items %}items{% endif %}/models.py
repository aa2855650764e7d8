from datetime import datetime
from typing import Annotated

import pydantic
from sqlmodel import Field, SQLModel

from ..core.models import WRITE_MODEL_CONFIG, Text, UTCDateTime, timestamp_field

# Each field's rule, stated once: the models below validate by it, the API schema shows it
# and the table's column takes its length from it (see core.models on the form).
Title = Annotated[Text, pydantic.Field(min_length=1, max_length=255)]
Description = Annotated[Text | None, pydantic.Field(max_length=4000)]


class ItemBase(SQLModel):
    title: Title
    description: Description = None


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


class ItemUpdate(SQLModel):
    model_config = WRITE_MODEL_CONFIG

    # May be left out, but not set to null: see users.models.
    title: Title = Field(default=None)
    description: Description = None


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
