import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import ASGIApp

from .api import api_router
from .core import passwords
from .core.config import get_settings
from .core.db import engine
from .core.error_handlers import add_exception_handlers
from .core.limits import RequestLimits
from .core.logging import configure_logging
from .core.metrics import add_metrics
from .core.middleware import OuterLayer
from .core.openapi import create_documented_app
from .core.tracing import add_tracing, telemetry_config, tracer_provider


@asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
    await asyncio.to_thread(passwords.warm_up)
    # What startup built lives as long as the process: keep the garbage collector from
    # walking it again and again, and let it collect young objects less often: fewer, shorter
    # pauses under load (the template repository's README, "Speed", has the figure).
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
    # Refusals before the application reads a request: oversized bodies, JSON objects of
    # too many members, sign-ins while hashing is full.
    app.add_middleware(
        RequestLimits,
        max_body_bytes=settings.MAX_REQUEST_BODY_BYTES,
        sign_in_path=f"{api_router.prefix}/auth/token",
    )
    # Traces (when on) tag their spans with the request id, inside the span.
    add_tracing(app, engine, traces)
    if settings.METRICS_ENABLED:
        add_metrics(app, engine)
    # Around everything, Starlette's error middleware too (which add_middleware cannot
    # reach): the request id, fixed and CORS headers, metrics and the access line, so that
    # every response, a 413 or a 500 too, carries an id and every log line names it.
    build_stack = app.build_middleware_stack

    def build_stack_inside_outer_layer() -> ASGIApp:
        return OuterLayer(
            build_stack(), metrics=settings.METRICS_ENABLED, cors_origins=settings.CORS_ORIGINS
        )

    app.build_middleware_stack = build_stack_inside_outer_layer  # type: ignore[method-assign]
    add_exception_handlers(app)
    app.include_router(api_router)
    return app


app = create_app()
