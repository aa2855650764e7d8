from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from ..core.errors import NotFoundError
from ..core.models import utcnow
from ..users.models import User
from .models import Item, ItemCreate, ItemUpdate


class ItemNotFoundError(NotFoundError):
    description = "Item not found"


async def create_item(db: AsyncSession, item_in: ItemCreate, owner_id: int) -> Item:
    now = utcnow()
    item = Item.model_validate(
        item_in, update={"owner_id": owner_id, "created_at": now, "updated_at": now}
    )
    db.add(item)
    await db.commit()
    return item


async def list_items(
    db: AsyncSession, viewer: User, *, offset: int, limit: int
) -> tuple[list[Item], int]:
    visible = select(Item)
    if not viewer.is_superuser:
        visible = visible.where(col(Item.owner_id) == viewer.id)
    count = await db.scalar(select(func.count()).select_from(visible.subquery()))
    page = visible.order_by(col(Item.id)).offset(offset).limit(limit)
    return list((await db.exec(page)).all()), count or 0


async def get_item(db: AsyncSession, viewer: User, item_id: int) -> Item:
    item = await db.get(Item, item_id)
    # Someone else's item is "not found": its existence is not revealed.
    if item is None or (item.owner_id != viewer.id and not viewer.is_superuser):
        raise ItemNotFoundError
    return item


async def update_item(db: AsyncSession, item: Item, changes: ItemUpdate) -> Item:
    item.sqlmodel_update(changes.model_dump(exclude_unset=True))
    item.updated_at = utcnow()
    db.add(item)
    await db.commit()
    return item


async def delete_item(db: AsyncSession, item: Item) -> None:
    await db.delete(item)
    await db.commit()
