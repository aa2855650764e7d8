"""The production server, `python -m <package>`: what one client may hold, in one place.

The image, compose and Kubernetes run this. uvicorn serves with its httptools protocol (the
fastest it has) and BoundedHttpToolsProtocol adds the bounds httptools lacks (it reads a 64 MB
header whole, takes 100,000 headers, and nothing in uvicorn drops a client that never finishes
its headers: its keep-alive timer starts only after a response, and any byte stops it):

- a request whose line and headers exceed MAX_HEADER_BYTES gets 431 and the connection is
  closed, however the bytes arrive (counted before the parser sees them; 100,000 headers are
  far past the limit, as a header line takes at least 4 bytes);
- a client has HEADER_TIMEOUT_SECONDS to send a request's line and headers, from connecting or
  from its previous response;
- idle keep-alive connections close after KEEP_ALIVE_SECONDS (uvicorn's own timer).

Why not uvicorn's h11 protocol, which bounds incomplete headers itself: that bound misses
headers that arrive whole in one read, so h11 needed the same guard, and h11 costs 10 to 20 %
more server CPU per request, where the guard costs httptools a few microseconds. The guard
does everything on httptools, so only that one is kept. Change serving settings here only: the
template's benchmark measures what they cost.

`uv run uvicorn <package>.main:app` and `fastapi dev` still work for development, with
uvicorn's defaults (none of these bounds, and proxy headers trusted from 127.0.0.1).
"""

import asyncio
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .config import get_settings
from .logging import configure_logging

# The request line and headers together; past this, 431 and the connection closed. Browsers
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


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with a bound on headers' size and on the time to send them.

    A read that may hold a request's line and headers (from connecting, or once the previous
    request's body is complete, until the parser has seen the end of its headers) is counted
    up to the blank line ending them, which may straddle two reads; a body behind it in the
    same read is no header. A request pipelined behind another in the same read is counted
    from its next read: its headers may exceed the limit by that one read.
    """

    _header_timer: asyncio.TimerHandle | None = None
    # True while the bytes read may be a request's line and headers.
    _in_headers = True
    # Bytes of the request line and headers received so far, and the last few of them.
    _header_bytes = 0
    _header_tail = b""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        if self._in_headers:
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

    def on_headers_complete(self) -> None:
        self._in_headers, self._header_bytes, self._header_tail = False, 0, b""
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        # What follows is the next request's line and headers.
        self._in_headers = True
        super().on_message_complete()

    def on_response_complete(self) -> None:
        self._cancel_header_timer()
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def _refuse_headers(self) -> None:
        self._cancel_header_timer()
        if not self.transport.is_closing():
            self.transport.write(TOO_LARGE)
            self.transport.close()

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(HEADER_TIMEOUT_SECONDS, self._headers_too_slow)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        # Still waiting for a request's headers, with no response under way: drop it.
        answering = self.cycle is not None and not self.cycle.response_complete
        if self._in_headers and not answering and not self.transport.is_closing():
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
        "http": BoundedHttpToolsProtocol,
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
