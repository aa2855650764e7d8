"""Prometheus metrics at /metrics, all in one place (one piece: what is counted and how every
worker's counts are summed): requests, latency, in flight, pool, password hashing, throttling.

Off with METRICS_ENABLED=false. Under several worker processes (WEB_CONCURRENCY) each worker
writes its figures to files in a directory they share, and /metrics sums them all: whichever
worker answers the scrape, it speaks for every one. Touch this file to add a metric; other
modules only call the small functions below (set_password_hash_queue_depth,
count_throttled_sign_in).
"""

# First: prometheus-client reads the directory this chooses when it is imported.
from .worker_metrics import MULTIPROCESS, process_started

# isort: split

import atexit
import os
import threading
import time
from pathlib import Path
from typing import Any, Literal

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as prometheus_multiprocess
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import QueuePool
from starlette.requests import Request
from starlette.responses import Response

from .config import get_settings

METRICS_PATH = get_settings().METRICS_PATH
_LABELS = ("method", "route", "status")
# Seconds; finer where this service's answers usually fall.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

REQUESTS = Counter("http_requests", "HTTP requests answered", _LABELS)
LATENCY = Histogram(
    "http_request_duration_seconds",
    "Time to answer an HTTP request",
    _LABELS,
    buckets=_LATENCY_BUCKETS,
)
IN_FLIGHT = Gauge(
    "http_requests_in_flight", "HTTP requests being served", multiprocess_mode="livesum"
)
POOL_SIZE = Gauge("db_pool_size", "Pooled database connections kept", multiprocess_mode="livesum")
POOL_CHECKED_OUT = Gauge(
    "db_pool_checked_out", "Database connections in use", multiprocess_mode="livesum"
)
POOL_OVERFLOW = Gauge(
    "db_pool_overflow", "Connections open beyond the pool size", multiprocess_mode="livesum"
)
POOL_WAITERS = Gauge(
    "db_pool_waiters", "Requests waiting for a database connection", multiprocess_mode="livesum"
)
HASH_QUEUE_DEPTH = Gauge(
    "password_hash_queue_depth",
    "Password hashes waiting for or running on the hashing pool",
    multiprocess_mode="livesum",
)
THROTTLED_SIGN_INS = Counter(
    "sign_ins_throttled", "Sign-in attempts refused by throttling", ("by",)
)


def set_password_hash_queue_depth(depth: int) -> None:
    """The hashing pool's queue changed: `depth` hashes now wait or run in this process."""
    HASH_QUEUE_DEPTH.set(depth)


def count_throttled_sign_in(by: Literal["account", "client"]) -> None:
    """A sign-in attempt was refused (429) by the account's or the client's throttle."""
    THROTTLED_SIGN_INS.labels(by).inc()


# Each (method, route, status) series, looked up once: labels() costs more than inc().
_known_series: dict[tuple[str, str, int], tuple[Any, Any]] = {}


def series(method: str, route: str, status: int) -> tuple[Any, Any]:
    """The request counter and latency histogram of one (method, route template, status)."""
    key = (method if method in _METHODS else "other", route, status)
    if (found := _known_series.get(key)) is None:
        labels = (key[0], route, str(status))
        found = _known_series[key] = (REQUESTS.labels(*labels), LATENCY.labels(*labels))
    return found


_engine: AsyncEngine | None = None


def sample_pool() -> None:
    """Copy the connection pool's figures (this process's) into the gauges."""
    pool = _engine.sync_engine.pool if _engine is not None else None
    if not isinstance(pool, QueuePool):
        return
    POOL_SIZE.set(pool.size())
    POOL_CHECKED_OUT.set(pool.checkedout())
    POOL_OVERFLOW.set(max(0, pool.overflow()))
    # core/pool.py's FairQueue keeps its waiting requests in a deque.
    POOL_WAITERS.set(len(getattr(pool._pool, "_waiters", ())))


def _sample_pool_every_second() -> None:
    while True:
        sample_pool()
        time.sleep(1)


async def metrics_endpoint(_request: Request) -> Response:
    sample_pool()
    if MULTIPROCESS:
        registry = CollectorRegistry()
        prometheus_multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry = REGISTRY
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


_sampler: threading.Thread | None = None


def _pids_with_files(directory: Path) -> set[int]:
    # prometheus-client names each file <kind>_<pid>.db
    suffixes = (path.stem.rsplit("_", 1)[-1] for path in directory.glob("*.db"))
    return {int(suffix) for suffix in suffixes if suffix.isdigit()}


def add_metrics(app: Any, engine: AsyncEngine) -> None:
    """Serve /metrics (not part of the API's schema); core/middleware.py counts requests."""
    global _engine, _sampler
    _engine = engine
    app.add_route(METRICS_PATH, metrics_endpoint, include_in_schema=False)
    if MULTIPROCESS and _sampler is None:
        # The worker that answers a scrape cannot see the others' pools: each worker
        # writes its own figures down every second.
        _sampler = threading.Thread(
            target=_sample_pool_every_second, name="metrics-pool-sampler", daemon=True
        )
        _sampler.start()
        # Gauges of a worker that has stopped stop counting in the sums: this one's when it
        # exits, those of any that died without exiting (and were replaced) now.
        atexit.register(prometheus_multiprocess.mark_process_dead, os.getpid())
        for pid in _pids_with_files(Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])):
            if process_started(pid) is None:
                prometheus_multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
