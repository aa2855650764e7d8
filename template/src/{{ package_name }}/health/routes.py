import asyncio

from fastapi import APIRouter
from sqlmodel import SQLModel, select

from ..core.db import SessionDep
from ..core.errors import BusyError, responses

router = APIRouter(prefix="/health", tags=["health"])

# Well inside the 5 s a load balancer is promised.
READY_TIMEOUT_SECONDS = 3.0


class DatabaseUnreachableError(BusyError):
    description = "Database unreachable"


class HealthStatus(SQLModel):
    status: str = "ok"


@router.get("/live")
async def live() -> HealthStatus:
    return HealthStatus()


@router.get("/ready", responses=responses(DatabaseUnreachableError))
async def ready(db: SessionDep) -> HealthStatus:
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS):
            await db.exec(select(1))
    except Exception as error:  # any failure to answer means not ready
        raise DatabaseUnreachableError from error
    return HealthStatus()
