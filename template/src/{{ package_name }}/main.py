import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from .api import api_router
from .core import security
from .core.config import get_settings
from .core.db import engine
from .core.errors import add_exception_handlers
from .core.headers import add_security_headers
from .core.limits import BodySizeLimit, JsonMemberLimit, ShedSignInsWhileHashingIsFull
from .core.logging import AccessLog, add_request_ids, configure_logging
from .core.metrics import METRICS_PATH, add_metrics
from .core.openapi import create_documented_app
from .core.tracing import add_tracing, telemetry_config, tracer_provider


@asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
    await asyncio.to_thread(security.warm_up)
    # What startup built lives as long as the process: keep the garbage collector from
    # walking it again and again, and let it collect young objects less often. Under load
    # this halves p99 latency (`nox -s bench` in the template repository).
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
    yield
    await engine.dispose()


def create_app() -> FastAPI:
    settings = get_settings()
    configure_logging(settings)
    traces = tracer_provider()
    app = create_documented_app(
        docs=settings.DOCS_ENABLED,
        title=settings.PROJECT_NAME,
        telemetry=telemetry_config(traces),
        lifespan=lifespan,
        # Starlette would redirect /users/ to /users at an absolute URL built from the
        # client's Host header; such a path is simply not found instead.
        redirect_slashes=False,
        responses={413: {"description": "Request body too large"}},
    )
    if settings.CORS_ORIGINS:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.CORS_ORIGINS,
            # Never credentials for any site ("*" is refused in production).
            allow_credentials="*" not in settings.CORS_ORIGINS,
            allow_methods=["*"],
            allow_headers=["*"],
        )
    # Before validation could make an error of each of a hundred thousand keys.
    app.add_middleware(JsonMemberLimit)
    # Outermost, so that no other layer reads an oversized body.
    app.add_middleware(BodySizeLimit, max_bytes=settings.MAX_REQUEST_BODY_BYTES)
    # Outside it, as it reads no body: sign-ins refused unread while hashing is full.
    app.add_middleware(ShedSignInsWhileHashingIsFull, path=f"{api_router.prefix}/auth/token")
    # Operating it: traces, metrics, the access line (none of them reads a body), and around
    # everything the request id, so that every response, a 413 or a 500 too, carries one and
    # every log line names it.
    add_tracing(app, engine, traces)
    if settings.METRICS_ENABLED:
        add_metrics(app, engine)
    app.add_middleware(AccessLog, unlogged_paths=frozenset({METRICS_PATH}))
    add_request_ids(app)
    add_security_headers(app)
    add_exception_handlers(app)
    app.include_router(api_router)
    return app


app = create_app()
