"""The ceiling for GET /users/me: the same work on bare Starlette + asyncpg.

Verify a JWT (PyJWT), fetch one row by primary key, return JSON. `nox -s bench` serves it
beside the generated service and reports the service as a fraction of it. Settings:
DATABASE_URL (postgresql+asyncpg://…) and SECRET_KEY, as for the service.
"""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import jwt
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

QUERY = (
    "SELECT id, username, email, full_name, is_active, is_superuser, created_at "
    "FROM users WHERE id = $1 AND EXISTS (SELECT 1 FROM user_sessions "
    "WHERE user_sessions.id = $2 AND user_sessions.user_id = users.id "
    "AND user_sessions.ended_at IS NULL)"
)
pool: asyncpg.Pool | None = None


async def me(request: Request) -> JSONResponse:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    try:
        claims = jwt.decode(token, os.environ["SECRET_KEY"], algorithms=["HS256"])
    except jwt.PyJWTError:
        return JSONResponse({"detail": "Could not validate credentials"}, status_code=401)
    assert pool is not None
    row = await pool.fetchrow(QUERY, int(claims["sub"]), int(claims["sid"]))
    if row is None or scheme.lower() != "bearer":
        return JSONResponse({"detail": "Could not validate credentials"}, status_code=401)
    user = dict(row)
    user["created_at"] = user["created_at"].isoformat()
    return JSONResponse(user)


@asynccontextmanager
async def lifespan(_app: Starlette) -> AsyncIterator[None]:
    global pool
    dsn = os.environ["DATABASE_URL"].replace("postgresql+asyncpg://", "postgresql://")
    pool = await asyncpg.create_pool(dsn, min_size=10, max_size=20)
    yield
    await pool.close()


app = Starlette(routes=[Route("/api/v1/users/me", me)], lifespan=lifespan)
