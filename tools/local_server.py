"""A server on a free local port, started and waited for: the one copy for the whole repository.

Standard library only. noxfile.py, tests/, and bench/ import it as `tools.local_server` (the
repository root on sys.path); tools/operations_check.py, run as a script, as `local_server`
(its own folder is on sys.path).

Each caller keeps its own readiness check (a socket that connects, or an HTTP answer) and its
own way to fail (nox's session.error, a test's assertion, a script's exit): `running` hands
`fail` the reason in a few words and the caller says the rest.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NoReturn


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_answers(port: int) -> Callable[[], bool]:
    """A readiness check: a TCP connection to 127.0.0.1:port succeeds."""

    def check() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), 1):
                return True
        except OSError:
            return False

    return check


def http_answers(url: str, timeout: float = 2) -> Callable[[], bool]:
    """A readiness check: a GET of url answers with a status below 400."""

    def check() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=timeout):
                return True
        except OSError:  # refused, reset, timed out, or an HTTP error status
            return False

    return check


@contextlib.contextmanager
def running(
    command: Sequence[str], *, log: Path, ready: Callable[[], bool], fail: Callable[[str], NoReturn],
    seconds: float = 30, interval: float = 0.2, own_group: bool = False,
    cwd: Path | None = None, env: dict[str, str] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:  # fmt: skip
    """Start command (its output to the file log), wait until ready() is true, yield the
    process, then stop it.

    If the process exits first, or seconds pass, fail is called with why ("exited with code 1",
    "did not answer within 30 s"); the log is there to show. With own_group the command leads a
    process group of its own and the whole group is stopped (a reloader and the server below it).
    Stopping is SIGTERM, then SIGKILL if it has not exited within 15 s.
    """
    with log.open("wb") as output:
        process = subprocess.Popen(
            list(command), cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT,
            start_new_session=own_group,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + seconds
            while True:
                if process.poll() is not None:
                    fail(f"exited with code {process.returncode}")
                if ready():
                    break
                if time.monotonic() > deadline:
                    fail(f"did not answer within {seconds:g} s")
                time.sleep(interval)
            yield process
        finally:
            stop(process, own_group)


def stop(process: subprocess.Popen[bytes], group: bool = False) -> None:
    """SIGTERM to the process (or the group it leads), SIGKILL after 15 s."""
    if process.poll() is not None and not group:  # a group may outlive its leader
        return
    send = (lambda sig: os.killpg(process.pid, sig)) if group else process.send_signal
    with contextlib.suppress(ProcessLookupError):
        send(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            send(signal.SIGKILL)
        process.wait()
