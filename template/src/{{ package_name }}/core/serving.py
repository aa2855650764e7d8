"""The production server, `python -m <package>`: what one client may hold, in one place.

The image, compose and Kubernetes run this. uvicorn serves, with its h11 protocol: h11 bounds
the request line and headers (`h11_max_incomplete_event_size`; past it, 400 and the
connection closed), where httptools, uvicorn's faster default, bounds nothing (a 64 MB header
is read whole, 100,000 headers are accepted). h11 checks its bound only while headers are
incomplete, though: headers that arrive whole in one read (64 KiB over loopback) pass it.
BoundedH11Protocol adds what is missing: a request whose line and headers exceed
MAX_HEADER_BYTES gets 431 and the connection is closed, however they arrive; and, as nothing
in uvicorn drops a client that never finishes its headers (its keep-alive timer starts only
after a response, and any byte stops it), a client has HEADER_TIMEOUT_SECONDS to send a
request's line and headers, from connecting or from its previous response. Idle keep-alive
connections close after KEEP_ALIVE_SECONDS (uvicorn's own timer). Change serving settings here
only: the template's benchmark measures what they cost.

`uv run uvicorn <package>.main:app` and `fastapi dev` still work for development, with
uvicorn's defaults (httptools, none of these bounds, and proxy headers trusted from 127.0.0.1).
"""

import asyncio
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from .config import get_settings
from .logging import configure_logging

# The request line and headers together; past this, 400 and the connection closed. Browsers
# and proxies send a few KiB; common proxies refuse past 8 to 64 KiB.
MAX_HEADER_BYTES = 32 * 1024
_TOO_LARGE_BODY = b"Request line and headers too large"
TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_TOO_LARGE_BODY), _TOO_LARGE_BODY)
)
# Seconds a client has to send a request's line and headers.
HEADER_TIMEOUT_SECONDS = 10.0
# Seconds an idle keep-alive connection stays open after a response.
KEEP_ALIVE_SECONDS = 5
# Seconds in-flight requests get to finish once the process is told to stop.
GRACEFUL_SHUTDOWN_SECONDS = 20


class BoundedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, closing connections that do not finish their headers in time."""

    _header_timer: asyncio.TimerHandle | None = None
    # Bytes of the request line and headers received so far, while they are incomplete, and
    # the last few of them.
    _header_bytes = 0
    _header_tail = b""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE:
            # The blank line that ends the headers may straddle two reads.
            seen = self._header_tail + data
            end = seen.find(b"\r\n\r\n")
            if end < 0:
                size = self._header_bytes + len(data)
            else:
                size = self._header_bytes + end + 4 - len(self._header_tail)
            if size > MAX_HEADER_BYTES:
                self._refuse_headers()
                return
            self._header_bytes, self._header_tail = (size, seen[-3:]) if end < 0 else (0, b"")
            # The first bytes of a next request on a kept-alive connection start its clock.
            if self._header_timer is None:
                self._arm_header_timer()
        super().data_received(data)

    def on_response_complete(self) -> None:
        self._cancel_header_timer()
        self._header_bytes, self._header_tail = 0, b""
        super().on_response_complete()

    def _refuse_headers(self) -> None:
        self._cancel_header_timer()
        if not self.transport.is_closing():
            self.transport.write(TOO_LARGE)
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(HEADER_TIMEOUT_SECONDS, self._headers_too_slow)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        # Still waiting for a request's headers (IDLE until they are complete): drop it.
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def server_options() -> dict[str, Any]:
    """uvicorn.run's options, from the settings (HOST, PORT, WEB_CONCURRENCY, …)."""
    settings = get_settings()
    package = __name__.partition(".")[0]
    trusted = settings.FORWARDED_ALLOW_IPS
    return {
        "app": f"{package}.main:app",
        "host": settings.HOST,
        "port": settings.PORT,
        "workers": settings.WEB_CONCURRENCY,
        "http": BoundedH11Protocol,
        "h11_max_incomplete_event_size": MAX_HEADER_BYTES,
        "timeout_keep_alive": KEEP_ALIVE_SECONDS,
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_SECONDS,
        # asyncio's own loop: at saturation uvloop let some connections wait for seconds.
        "loop": "asyncio",
        # X-Forwarded-For and -Proto only from the proxies named, and from none by default
        # (uvicorn alone would trust 127.0.0.1: any local client could pick its address).
        "proxy_headers": bool(trusted),
        "forwarded_allow_ips": trusted or "",
        "server_header": False,
    }


def serve() -> None:
    # The supervisor's own lines (workers started, stopped, restarted) go through the
    # service's handler too, as JSON in production: uvicorn sets up no logging of its own.
    configure_logging(get_settings())
    uvicorn.run(**server_options(), log_config=None)
