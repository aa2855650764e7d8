"""OpenTelemetry traces: off unless OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_TRACES_EXPORTER is set.

When on, FastAPI's own instrumentation opens a server span per request, SQLAlchemy's adds a
child span per statement, the request id goes on the server span, and spans leave through the
OTLP exporter (HTTP/protobuf; OTEL_TRACES_EXPORTER=console prints them instead). All the
standard OTEL_* variables apply (OTEL_SERVICE_NAME, OTEL_EXPORTER_OTLP_HEADERS, sampling…).
When off, nothing of the SDK is even imported. Touch this file to trace more or differently.
"""

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from asgi_correlation_id import correlation_id
from fastapi.telemetry import TelemetryConfig
from opentelemetry import trace
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import ASGIApp, Receive, Scope, Send

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

SERVICE_NAME = __name__.split(".")[0].replace("_", "-")
REQUEST_ID_ATTRIBUTE = "http.request.id"


def tracing_requested(environ: Mapping[str, str] = os.environ) -> bool:
    if environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return exporter != "none"
    return bool(
        environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def tracer_provider(exporter: "SpanExporter | None" = None) -> "TracerProvider | None":
    """A provider that exports spans, when the environment asks for traces (or `exporter`)."""
    if exporter is None and not tracing_requested():
        return None
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    name = os.environ.get("OTEL_SERVICE_NAME") or SERVICE_NAME
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    if exporter is not None:
        # Given by a caller (the tests): every span is exported as soon as it ends.
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        return provider
    if os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


def telemetry_config(provider: "TracerProvider | None") -> TelemetryConfig:
    """FastAPI's own OpenTelemetry settings: spans through `provider`; all off without one."""
    if provider is None:
        return {"tracing": False, "metrics": False, "logs": False}
    return {"tracer_provider": provider, "metrics": False, "logs": False}


class RequestIdOnSpan:
    """Writes the request id (core/logging.py) onto the request's server span."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (request_id := correlation_id.get()):
            trace.get_current_span().set_attribute(REQUEST_ID_ATTRIBUTE, request_id)
        await self.app(scope, receive, send)


def add_tracing(app: Any, engine: AsyncEngine, provider: "TracerProvider | None") -> None:
    """Trace the database statements and tag spans with request ids (inside request ids)."""
    if provider is None:
        return
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    instrumentor = SQLAlchemyInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        # Its declared range stops short of SQLAlchemy 2.1, whose engine events it uses
        # unchanged (tests/core/test_tracing.py shows the statements traced).
        instrumentor.instrument(
            engine=engine.sync_engine, tracer_provider=provider, skip_dep_check=True
        )
    app.add_middleware(RequestIdOnSpan)
