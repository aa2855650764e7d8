"""Serve an app under uvicorn for a measurement, sign in to it, and read its memory from /proc."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import NoReturn

import nox

from tools.local_server import free_port, port_answers, running

from .wrk import pinned


@contextlib.contextmanager
def bench_server(
    session: nox.Session, project: Path, app: str, env: Mapping[str, str | None], *extra: str,
    loop: str = "asyncio", http: str = "httptools", cpus: str | None = "0",
    uvicorn_logging: tuple[str, ...] = ("--no-access-log", "--log-level", "warning"),
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:  # fmt: skip
    """uvicorn (httptools unless `http` says h11), pinned to the first CPU, quiet; yields
    (base URL, process).

    env is laid over this process's environment (None unsets a variable). The event loop is
    asyncio's own, as the generated project serves: under saturation uvloop lets some
    connections wait for seconds (see the c=256 uvloop row that bench prints). The server's
    output goes to a file beside the project (a terminal would slow a logging server down),
    shown when it fails to start.
    """
    port = free_port()
    full_env = {k: v for k, v in {**os.environ, **env}.items() if v is not None}
    log_path = project.parent / f"{app.replace(':', '-')}-{port}.log"
    command = [
        *pinned(cpus), "uv", "run", "--no-sync", "uvicorn", app, "--port", str(port),
        "--loop", loop, "--http", http, *uvicorn_logging, *extra,
    ]  # fmt: skip

    def fail(why: str) -> NoReturn:
        session.error(f"{app} did not start ({why}):\n{log_path.read_text()[-3000:]}")

    with running(
        command, log=log_path, ready=port_answers(port), fail=fail, cwd=project, env=full_env
    ) as server:
        yield f"http://127.0.0.1:{port}", server


def sign_in(base_url: str, username: str, password: str) -> str:
    """A bearer access token from the served API."""
    form = urllib.parse.urlencode({"username": username, "password": password}).encode()
    with urllib.request.urlopen(f"{base_url}/api/v1/auth/token", data=form, timeout=10) as reply:
        return str(json.load(reply)["access_token"])


def server_process(root_pid: int, needle: str) -> int | None:
    """The first process below root_pid whose command line holds needle."""
    pending = [root_pid]
    while pending:
        pid = pending.pop()
        with contextlib.suppress(OSError):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            if needle in cmdline and "uv run" not in cmdline:
                return pid
            for task in Path(f"/proc/{pid}/task").iterdir():
                pending += [int(c) for c in (task / "children").read_text().split()]
    return None


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def memory_after_load(root_pid: int, needle: str) -> tuple[float, float]:
    """(resident MB once the server has gone idle, peak resident MB), NaN where unknown.

    Waits up to 10 s for the server's CPU time to stop growing: requests still in flight
    when the load generator stops (an argon2 hash holds 64 MiB while it runs) are not
    "after the load".
    """
    pid = server_process(root_pid, needle)
    if pid is None:
        return float("nan"), float("nan")
    deadline = time.monotonic() + 10
    ticks = cpu_ticks(pid)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        if (now := cpu_ticks(pid)) == ticks:
            break
        ticks = now
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024
