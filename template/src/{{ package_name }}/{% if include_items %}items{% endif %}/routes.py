from typing import Annotated

from fastapi import APIRouter, Path, status

from ..auth.dependencies import SIGNED_IN, CurrentUser
from ..core.db import SessionDep
from ..core.errors import responses
from ..core.models import MAX_ID
from ..core.params import Limit, Offset
from . import service
from .models import ItemCreate, ItemPublic, ItemsPublic, ItemUpdate

# Every route needs a signed-in, active user.
router = APIRouter(prefix="/items", tags=["items"], responses=SIGNED_IN)

ItemId = Annotated[int, Path(ge=1, le=MAX_ID)]
NOT_FOUND = responses(service.ItemNotFoundError)


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_item(db: SessionDep, user: CurrentUser, item_in: ItemCreate) -> ItemPublic:
    assert user.id is not None  # noqa: S101
    return ItemPublic.model_validate(await service.create_item(db, item_in, user.id))


@router.get("")
async def list_items(
    db: SessionDep,
    user: CurrentUser,
    offset: Offset = 0,
    limit: Limit = 100,
) -> ItemsPublic:
    items, count = await service.list_items(db, user, offset=offset, limit=limit)
    return ItemsPublic(data=[ItemPublic.model_validate(item) for item in items], count=count)


@router.get("/{item_id}", responses=NOT_FOUND)
async def read_item(db: SessionDep, user: CurrentUser, item_id: ItemId) -> ItemPublic:
    return ItemPublic.model_validate(await service.get_item(db, user, item_id))


@router.patch("/{item_id}", responses=NOT_FOUND)
async def update_item(
    db: SessionDep, user: CurrentUser, item_id: ItemId, changes: ItemUpdate
) -> ItemPublic:
    item = await service.get_item(db, user, item_id)
    return ItemPublic.model_validate(await service.update_item(db, item, changes))


@router.delete("/{item_id}", status_code=status.HTTP_204_NO_CONTENT, responses=NOT_FOUND)
async def delete_item(db: SessionDep, user: CurrentUser, item_id: ItemId) -> None:
    await service.delete_item(db, await service.get_item(db, user, item_id))
