"""Run wrk and read its report: requests/s, p50 and p99 latency, errors."""

from __future__ import annotations

import re
import shutil
import subprocess

import nox

Figures = dict[str, float]


def pinned(cpus: str | None) -> list[str]:
    """The taskset prefix that keeps a command on these CPUs (none where taskset is missing)."""
    return ["taskset", "-c", cpus] if cpus is not None and shutil.which("taskset") else []


def wrk(
    session: nox.Session, url: str, connections: int, seconds: int, *extra: str,
    cpus: str | None = "1",
) -> Figures:  # fmt: skip
    """Load url from the given CPUs (the second by default; None: wherever the kernel likes)."""
    threads = str(min(connections, 2))
    output = session.run(
        *pinned(cpus), "wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency",
        *extra, url, silent=True, external=True,
    )  # fmt: skip
    return parse_wrk(str(output))


def start_wrk(url: str, connections: int, seconds: int, *extra: str,
              env: dict[str, str]) -> subprocess.Popen[bytes]:  # fmt: skip
    """wrk in the background, unpinned, beside another load; read it with finish_wrk."""
    return subprocess.Popen(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", *extra, url],
        env=env, stdout=subprocess.PIPE,
    )  # fmt: skip


def finish_wrk(process: subprocess.Popen[bytes]) -> Figures:
    return parse_wrk(process.communicate()[0].decode())


def parse_wrk(output: str) -> Figures:
    def latency_ms(text: str) -> float:
        value = float(re.sub(r"[a-z]+$", "", text))
        unit = re.sub(r"^[\d.]+", "", text)
        return value * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]

    figures = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output)[1])}  # type: ignore[index]
    for percent, name in (("50", "p50"), ("99", "p99")):
        match = re.search(rf"^\s+{percent}(?:\.000)?%\s+(\S+)", output, re.MULTILINE)
        figures[name] = latency_ms(match[1]) if match else float("nan")
    errors = 0
    if match := re.search(r"Non-2xx or 3xx responses: (\d+)", output):
        errors += int(match[1])
    if match := re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    ):
        errors += sum(int(n) for n in match.groups())
    figures["errors"] = errors
    return figures
