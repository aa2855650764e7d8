"""One logging setup for the service, uvicorn and SQLAlchemy, and the request id on every line.

JSON lines in production, readable lines elsewhere (LOG_FORMAT, LOG_LEVEL). Each request gets
an id (a sane incoming X-Request-ID, or a new one), returned in the response and written on
every line logged while serving it; one access line per request closes it (both given by
core/middleware.py's layer). Touch this file to change what a log line holds; create_app
wires it.
"""

import json
import logging
import re
import sys
import time
from typing import IO, Any

from asgi_correlation_id import CorrelationIdFilter

from .config import Settings

REQUEST_ID_HEADER = "X-Request-ID"
# An incoming id is kept when it is short and made of characters that are safe to write into
# a log line and a header; anything else is replaced by a new one.
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

access_logger = logging.getLogger(__name__.split(".")[0] + ".access")

# What an access line carries besides its message, in JSON output.
_ACCESS_FIELDS = ("method", "path", "route", "status", "duration_ms")
# SQLAlchemy logs every statement at INFO and result rows (password hashes among them) at
# DEBUG, and its pool (core/pool.py's, named after its class) each disposal at INFO: all of
# it stays off unless a logger's level is set explicitly.
_QUIET_BELOW_WARNING = (
    "sqlalchemy.engine",
    "sqlalchemy.pool",
    __name__.rsplit(".", 1)[0] + ".pool",
)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: timestamp, level, logger, message, request_id, and extras."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "timestamp": self.formatTime(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "correlation_id", None),
        }
        for field in _ACCESS_FIELDS:
            if (value := getattr(record, field, None)) is not None:
                line[field] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return _encoder.encode(line)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        second = int(record.created)
        if second != self._second:
            self._second = second
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._second_text}.{int(record.msecs):03d}Z"

    _second = -1
    _second_text = ""


# One encoder for every line (json.dumps with `default` would build one per call).
_encoder = json.JSONEncoder(default=str)


class ConsoleFormatter(logging.Formatter):
    """Readable lines: time, level, logger, [request id or -], message."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s [%(request_id)s] %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        record.request_id = getattr(record, "correlation_id", None) or "-"
        return super().format(record)

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        # A message carries what clients sent (a path with %0a, an ANSI escape): escaped, it
        # can neither forge a line nor drive the terminal. Tracebacks keep their lines.
        record.message = record.message.translate(_CONTROL_ESCAPES)
        return super().formatMessage(record)


_CONTROL_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}


_handler: logging.Handler | None = None
_CALLER_LOOKUP = logging._srcfile


def configure_logging(settings: Settings, stream: IO[str] | None = None) -> None:
    """Route every logger through one handler: once per process, or again given a stream."""
    global _handler
    if _handler is not None and stream is None:
        return
    handler = logging.StreamHandler(stream or sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(ConsoleFormatter())
    handler.addFilter(CorrelationIdFilter())
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    root.addHandler(handler)
    root.setLevel(settings.LOG_LEVEL)
    _handler = handler
    # No line shows a thread, process or (in JSON) the calling function: not looking them up
    # for every record is the speed-up that the logging HOWTO itself suggests.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None if settings.log_format == "json" else _CALLER_LOOKUP
    # uvicorn configured its own handlers before importing the service: its lines go through
    # this handler instead, and its access line gives way to the one written here.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.asgi"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
        logger.setLevel(logging.NOTSET)
    uvicorn_access = logging.getLogger("uvicorn.access")
    uvicorn_access.handlers.clear()
    uvicorn_access.propagate = False
    for name in _QUIET_BELOW_WARNING:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.WARNING)
