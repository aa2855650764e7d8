"""The one ASGI layer around the whole app: request id, fixed headers, CORS, access line, metrics.

Each request gets an id (a sane incoming X-Request-ID, or a new one) that every log line
written while serving it names and its response returns; the response gets the headers that
every response carries (FIXED_RESPONSE_HEADERS) and, where CORS_ORIGINS is set, CORS's; once
answered, the request is counted (core/metrics.py) and logged in one access line
(core/logging.py). One layer, outside Starlette's error middleware, so that the 500 of an
unexpected error carries its id too, and so that a request pays for one wrapper, not five.
Touch this file to add a header to every response; create_app wires it.
"""

import logging
import secrets
import time
from collections.abc import Sequence

from asgi_correlation_id import correlation_id
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .logging import REQUEST_ID_HEADER, SANE_REQUEST_ID, access_logger
from .metrics import IN_FLIGHT, METRICS_PATH, series
from .routes import route_template

# Headers that every response carries, whoever answered it (a route, a 413, a 500), as
# (lower-case name, value) bytes pairs: browsers must not guess another content type than the
# one sent (nosniff), nor show a response in a frame of another site (clickjacking:
# X-Frame-Options for older browsers, CSP frame-ancestors for the rest).
FIXED_RESPONSE_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"frame-ancestors 'none'"),
)

_REQUEST_ID = REQUEST_ID_HEADER.lower().encode()
_ORIGIN = b"origin"
_VARY = b"vary"
_INFO = logging.INFO


def new_request_id() -> str:
    # 128 random bits, as 32 hex digits (as uuid4().hex, in a fifth of the time).
    return secrets.token_hex(16)


class OuterLayer:
    """Request id, fixed and CORS headers, metrics and the access line, in one pass."""

    def __init__(self, app: ASGIApp, *, metrics: bool, cors_origins: Sequence[str] = ()) -> None:
        self.app = app
        self.metrics = metrics
        # Requests that name an Origin go through Starlette's CORS middleware (preflights
        # are answered there); the others only learn that the answer varies by Origin.
        self.cors: ASGIApp | None = None
        if cors_origins:
            self.cors = CORSMiddleware(
                app,
                allow_origins=cors_origins,
                # Never credentials for any site ("*" is refused in production).
                allow_credentials="*" not in cors_origins,
                allow_methods=["*"],
                allow_headers=["*"],
            )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = None
        has_origin = False
        for name, value in scope["headers"]:
            if name == _REQUEST_ID and request_id is None:  # the first, if sent twice
                request_id = value.decode("latin-1")
            elif name == _ORIGIN:
                has_origin = True
        if request_id is None or SANE_REQUEST_ID.fullmatch(request_id) is None:
            request_id = new_request_id()
        correlation_id.set(request_id)
        added = [(_REQUEST_ID, request_id.encode()), *FIXED_RESPONSE_HEADERS]
        app = self.app
        vary_by_origin = False
        if self.cors is not None:
            if has_origin:
                app = self.cors
            else:
                vary_by_origin = True
        status = 500

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [*message.get("headers", ()), *added]
                if vary_by_origin:
                    _vary_by_origin(headers)
                message["headers"] = headers
            await send(message)

        # Scrapes are not traffic: neither logged nor counted.
        observed = scope["path"] != METRICS_PATH
        logged = observed and access_logger.isEnabledFor(_INFO)
        counted = observed and self.metrics
        if not (logged or counted):
            await app(scope, receive, send_with_headers)
            return
        started = time.perf_counter()
        if counted:
            IN_FLIGHT.inc()
        try:
            await app(scope, receive, send_with_headers)
        finally:
            seconds = time.perf_counter() - started
            route = route_template(scope)
            if counted:
                IN_FLIGHT.dec()
                requests, latency = series(scope["method"], route, status)
                requests.inc()
                latency.observe(seconds)
            if logged:
                _log_access(scope, route, status, seconds)


def _vary_by_origin(headers: list[tuple[bytes, bytes]]) -> None:
    # As Starlette's CORS middleware does for a request without an Origin: the Vary values
    # already given, and Origin, in one header.
    values = [value for name, value in headers if name.lower() == _VARY]
    if values:
        headers[:] = [(name, value) for name, value in headers if name.lower() != _VARY]
    headers.append((_VARY, b", ".join([*values, b"Origin"])))


def _log_access(scope: Scope, route: str, status: int, seconds: float) -> None:
    milliseconds = round(seconds * 1000, 2)
    method = scope["method"]
    path = scope["path"]
    access_logger.info(
        "%s %s %d %.1f ms",
        method,
        path,
        status,
        milliseconds,
        extra={
            "method": method,
            "path": path,
            "route": route,
            "status": status,
            "duration_ms": milliseconds,
        },
    )
