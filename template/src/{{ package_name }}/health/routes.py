import asyncio

from fastapi import APIRouter, HTTPException, status
from sqlmodel import SQLModel, select

from ..core.db import SessionDep

router = APIRouter(prefix="/health", tags=["health"])

# Well inside the 5 s a load balancer is promised.
READY_TIMEOUT_SECONDS = 3.0


class HealthStatus(SQLModel):
    status: str = "ok"


@router.get("/live")
async def live() -> HealthStatus:
    return HealthStatus()


@router.get(
    "/ready",
    responses={status.HTTP_503_SERVICE_UNAVAILABLE: {"description": "Database unreachable"}},
)
async def ready(session: SessionDep) -> HealthStatus:
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS):
            await session.exec(select(1))
    except Exception as error:  # any failure to answer means not ready
        raise HTTPException(
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE, detail="Database unreachable"
        ) from error
    return HealthStatus()
