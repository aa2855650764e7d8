"""The speed goal's table: GET /users/me against the ceiling, this tree beside an older one.

For each template (this tree, and BENCH_BASELINE, c860671 by default), served as it ships:
c=32 as a fraction of the ceiling, then c=256 twice on the same server (the first round
shows any warm-up spike), with the server's CPU time per request, which the other load on a
shared machine disturbs less than requests/s. Then this tree with each layer switched off,
and on h11 instead of httptools. `nox -s bench -- goal` prints this table alone.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import nox

from .run import APP, BENCH, PASSWORD, Row
from .server import bench_server, cpu_ticks, server_process, sign_in
from .wrk import Figures, wrk

TARGET_CEILING_RATIO = 0.5
FLOOR_CEILING_RATIO = 0.35
TARGET_C256_RATIO = 0.9
TARGET_C256_P99_MS = 400.0
TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def served(
    session: nox.Session, project: Path, env: Mapping[str, str | None], auth: tuple[str, ...],
    seconds: int, *extra: str, app: str = APP, rounds_256: int = 2, **options: str,
) -> list[Figures]:  # fmt: skip
    """c=32, then c=256 `rounds_256` times, on one server; each with its CPU µs/request."""
    with bench_server(session, project, app, env, *extra, **options) as (base, server):
        url = f"{base}/api/v1/users/me"
        pid = server_process(server.pid, app)
        wrk(session, url, 32, 3, *auth)  # warm-up
        results = []
        for connections in (32, *[256] * rounds_256):
            before = cpu_ticks(pid) if pid else 0
            figures = wrk(session, url, connections, seconds, *auth)
            used = (cpu_ticks(pid) - before) / TICKS_PER_SECOND if pid else float("nan")
            figures["cpu_us"] = used * 1e6 / max(figures["rps"] * seconds, 1)
            results.append(figures)
        return results


def measure_goal(
    session: nox.Session, projects: Mapping[str, Path], env: Mapping[str, str | None],
    seconds: int,
) -> list[Row]:  # fmt: skip
    """The goal's table for each project (name → rendered folder; this tree first), on the
    seeded database that env's DATABASE_URL names."""
    (this_name, this_tree), *_ = projects.items()
    with bench_server(session, this_tree, APP, env) as (base, _):
        token = sign_in(base, "bench0", PASSWORD)
    auth = ("-H", f"Authorization: Bearer {token}")
    with bench_server(session, this_tree, "ceiling:app", env, "--app-dir", str(BENCH),
                      loop="uvloop") as (base, _):  # fmt: skip
        url = f"{base}/api/v1/users/me"
        wrk(session, url, 32, 3, *auth)
        ceiling = wrk(session, url, 32, seconds, *auth)

    rows: list[Row] = [
        ("ceiling (Starlette + asyncpg, uvloop) GET /users/me c=32",
         f"{ceiling['rps']:.0f} req/s, p99 {ceiling['p99']:.1f} ms", ""),
    ]  # fmt: skip

    def add(name: str, figures: list[Figures]) -> None:
        c32, *rounds = figures
        ratio = c32["rps"] / ceiling["rps"]
        p99s = ", ".join(f"{r['p99']:.0f}" for r in rounds)
        errors = sum(f["errors"] for f in figures)
        rows.append((
            f"{name}: c=32 / ceiling; c=256 p99 per round",
            f"{ratio:.2f} ({c32['rps']:.0f} req/s, {c32['cpu_us']:.0f} µs CPU/req); "
            f"{p99s} ms; c=256/c=32 {rounds[-1]['rps'] / c32['rps']:.2f}; {errors:.0f} errors",
            f">= {TARGET_CEILING_RATIO} (never < {FLOOR_CEILING_RATIO}); <= "
            f"{TARGET_C256_P99_MS:.0f} ms; >= {TARGET_C256_RATIO}; 0",
        ))  # fmt: skip

    for name, project in projects.items():
        add(name, served(session, project, env, auth, seconds))

    # Each layer's cost: this tree with one thing off at a time, then all of it.
    no_traces = {name: None for name in os.environ if name.startswith("OTEL_")}
    variants = {
        "METRICS_ENABLED=false": {"METRICS_ENABLED": "false"},
        "LOG_LEVEL=WARNING (no access line)": {"LOG_LEVEL": "WARNING"},
        "CORS_ORIGINS= (no CORS)": {"CORS_ORIGINS": ""},
        "all three off": {"METRICS_ENABLED": "false", "LOG_LEVEL": "WARNING", "CORS_ORIGINS": ""},
    }
    for name, changes in variants.items():
        figures = served(session, this_tree, {**env, **no_traces, **changes}, auth, seconds,
                         rounds_256=1)  # fmt: skip
        add(f"{this_name}, {name}", figures)

    # The HTTP parser: h11 (stricter header limits) against httptools (the default above).
    add(f"{this_name} on h11", served(session, this_tree, env, auth, seconds, http="h11"))
    return rows
