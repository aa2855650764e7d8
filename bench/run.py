"""What `nox -s bench` measures on a served project, in order, and the table it prints.

seed() fills the migrated database; measure_served() serves the project (and the ceiling) and
loads it with wrk; print_table() prints every figure beside its target. The noxfile's bench
session renders the project, times its tests (timing_rows()) and calls them, after the speed
goal's table (goal.py).
"""

from __future__ import annotations

import os
import time
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nox

from .flood import measure_flood, report
from .server import bench_server, memory_after_load, sign_in
from .wrk import Figures, finish_wrk, start_wrk, wrk

BENCH = Path(__file__).resolve().parent
APP = "acme_orders.main:app"
PASSWORD = "bench password"
# Targets from the speed issue; the table prints each figure beside its target.
TARGET_CEILING_RATIO = 0.25
TARGET_C256_RATIO = 0.80
TARGET_LIVE_P99_MS = 50.0
TARGET_RSS_MB = 150.0
TARGET_SUITE_S = 15.0

Row = tuple[str, str, str]  # figure, measured, target


def load_row(name: str, figures: Figures) -> Row:
    return (name, f"{figures['rps']:.0f} req/s, p50 {figures['p50']:.1f} ms, "
                  f"p99 {figures['p99']:.1f} ms, {figures['errors']:.0f} errors", "")  # fmt: skip


def seed(session: nox.Session, database_url: str, env: Mapping[str, str | None]) -> None:
    """1000 users (bench0…) and 200 items of bench0's in the migrated database."""
    owner = session.run(
        "uv", "run", "--no-sync", "python", str(BENCH / "seed.py"), database_url, "1000", "200",
        PASSWORD, env=dict(env), external=True, silent=True,
    )  # fmt: skip
    session.log(f"seeded 1000 users and 200 items for user {str(owner).strip()}")


def measure_served(
    session: nox.Session, project: Path, env: Mapping[str, str | None], seconds: int
) -> list[Row]:
    """Serve the seeded project with env (its DATABASE_URL) and load it."""
    with bench_server(session, project, APP, env) as (base, server):
        token = sign_in(base, "bench0", PASSWORD)
        auth = ("-H", f"Authorization: Bearer {token}")
        wrk(session, f"{base}/api/v1/users/me", 32, 3, *auth)  # warm-up
        results: dict[str, Figures] = {}
        for connections in (32, 256):
            results[f"GET /users/me c={connections}"] = wrk(
                session, f"{base}/api/v1/users/me", connections, seconds, *auth)  # fmt: skip
            results[f"GET /items?limit=50 c={connections}"] = wrk(
                session, f"{base}/api/v1/items?limit=50", connections, seconds, *auth)  # fmt: skip
            results[f"POST /items c={connections}"] = wrk(
                session, f"{base}/api/v1/items", connections, seconds, *auth,
                "-s", str(BENCH / "post_item.lua"))  # fmt: skip
        # Eight logins at a time on the first CPU's event loop, /health/live beside them.
        login = urllib.parse.urlencode({"username": "bench1", "password": PASSWORD})
        storm = start_wrk(f"{base}/api/v1/auth/token", 8, seconds + 2,
                          "-s", str(BENCH / "login.lua"),
                          env={**os.environ, "BENCH_LOGIN": login})  # fmt: skip
        time.sleep(1)
        live = wrk(session, f"{base}/api/v1/health/live", 4, seconds - 1)
        logins = finish_wrk(storm)
        rss, peak_rss = memory_after_load(server.pid, APP)

    # The service again on uvloop, which it does not use: the figures say why.
    with bench_server(session, project, APP, env, loop="uvloop") as (uvloop_base, _):
        wrk(session, f"{uvloop_base}/api/v1/users/me", 32, 3, *auth)
        uvloop256 = wrk(session, f"{uvloop_base}/api/v1/users/me", 256, seconds, *auth)

    # The ceiling on uvloop, its fastest: the stricter bar.
    ceiling = users_me(session, project, env, auth, seconds, "ceiling:app", "--app-dir", str(BENCH),
                       loop="uvloop")  # fmt: skip

    # The instrumentation's cost: logging at INFO with uvicorn's access lines (as the
    # Dockerfile serves), metrics on, traces off; beside it the same with all of it off.
    no_traces = {name: None for name in os.environ if name.startswith("OTEL_")}
    instrumented = users_me(
        session, project, {**env, **no_traces, "LOG_LEVEL": "INFO", "METRICS_ENABLED": "true"},
        auth, seconds, uvicorn_logging=())  # fmt: skip
    bare = users_me(
        session, project, {**env, **no_traces, "LOG_LEVEL": "WARNING", "METRICS_ENABLED": "false"},
        auth, seconds)  # fmt: skip

    # Two worker processes against one, each free to use both CPUs, and wrk too.
    workers: dict[int, Figures] = {}
    for count in (1, 2):
        workers[count] = users_me(session, project, {**env, "WEB_CONCURRENCY": str(count)},
                                  auth, seconds, APP, "--workers", str(count), cpus=None)  # fmt: skip

    me32, me256 = results["GET /users/me c=32"], results["GET /users/me c=256"]
    rows = [load_row(name, figures) for name, figures in results.items()]
    rows += [
        ("the same GET /users/me c=256 on uvloop (not used)",
         f"{uvloop256['rps']:.0f} req/s, p99 {uvloop256['p99']:.1f} ms, "
         f"{uvloop256['errors']:.0f} errors", ""),
        ("ceiling (Starlette + asyncpg, uvloop) GET /users/me c=32",
         f"{ceiling['rps']:.0f} req/s, p99 {ceiling['p99']:.1f} ms", ""),
        ("GET /users/me c=32 / ceiling", f"{me32['rps'] / ceiling['rps']:.2f}",
         f">= {TARGET_CEILING_RATIO}"),
        ("GET /users/me c=256 / c=32", f"{me256['rps'] / me32['rps']:.2f}, "
         f"{me256['errors']:.0f} errors", f">= {TARGET_C256_RATIO}, 0 errors"),
        ("/health/live p99 during 8 concurrent logins", f"{live['p99']:.1f} ms "
         f"({logins['rps']:.1f} logins/s)", f"<= {TARGET_LIVE_P99_MS:.0f} ms"),
        ("server RSS after the load (idle again)", f"{rss:.0f} MB (peak {peak_rss:.0f} MB)",
         f"<= {TARGET_RSS_MB:.0f} MB"),
        ("GET /users/me c=32, INFO logs + metrics, no traces / ceiling",
         f"{instrumented['rps'] / ceiling['rps']:.2f} ({instrumented['rps']:.0f} req/s, "
         f"p99 {instrumented['p99']:.1f} ms)", f">= {TARGET_CEILING_RATIO}"),
        ("the same with WARNING logs, no metrics / ceiling",
         f"{bare['rps'] / ceiling['rps']:.2f} ({bare['rps']:.0f} req/s, "
         f"p99 {bare['p99']:.1f} ms)", ""),
        ("GET /users/me c=32, 2 workers / 1 (wrk on the same 2 CPUs)",
         f"{workers[2]['rps'] / workers[1]['rps']:.2f} ({workers[2]['rps']:.0f} / "
         f"{workers[1]['rps']:.0f} req/s, {workers[2]['errors']:.0f} errors)",
         "wrk takes CPU from the server: more cores gain more"),
    ]  # fmt: skip

    # A flood of wrong passwords while a signed-in client reads /users/me (bench/flood.py).
    # Last: it leaves the address 127.0.0.1 throttled for sign-ins.
    with bench_server(session, project, APP, env) as (flood_base, _):
        flood = measure_flood(flood_base, "bench2", PASSWORD, token, seconds=seconds)
    rows += [(f"login flood: {name}", value, target) for name, value, target, _ in report(flood)]

    return rows


def users_me(
    session: nox.Session, project: Path, env: Mapping[str, str | None], auth: tuple[str, ...],
    seconds: int, app: str = APP, *extra: str, cpus: str | None = "0", **server_options: Any,
) -> Figures:  # fmt: skip
    """GET /users/me at c=32 on a server of its own, after a 3 s warm-up.

    The server on the first CPU and wrk on the second, or (cpus=None) both anywhere.
    """
    wrk_cpus = None if cpus is None else "1"
    with bench_server(session, project, app, env, *extra, cpus=cpus, **server_options) as (
        base,
        _,
    ):
        wrk(session, f"{base}/api/v1/users/me", 32, 3, *auth, cpus=wrk_cpus)
        return wrk(session, f"{base}/api/v1/users/me", 32, seconds, *auth, cpus=wrk_cpus)


def timing_rows(copy_s: float, render_to_green_s: float, sqlite_suite_s: float,
                postgres_suite_s: float) -> list[Row]:  # fmt: skip
    return [
        ("copier copy", f"{copy_s:.1f} s", ""),
        ("render to green generated tests (SQLite)", f"{render_to_green_s:.1f} s", ""),
        ("generated test suite, SQLite", f"{sqlite_suite_s:.1f} s", f"<= {TARGET_SUITE_S:.0f} s"),
        ("generated test suite, PostgreSQL", f"{postgres_suite_s:.1f} s", ""),
    ]


def print_table(rows: list[Row]) -> None:
    width = max(len(row[0]) for row in rows)
    print("\n" + "figure".ljust(width), "| measured | target")
    for name, value, target in rows:
        print(name.ljust(width), "|", value, "|", target)
