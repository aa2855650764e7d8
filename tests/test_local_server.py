"""tools/local_server.py: the one free_port and start-and-wait helper of the repository."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import NoReturn

import pytest

from tools.local_server import free_port, http_answers, port_answers, running


class Failed(Exception):
    pass


def fail(why: str) -> NoReturn:
    raise Failed(why)


def test_serves_until_the_block_ends_then_stops(tmp_path: Path) -> None:
    port = free_port()
    command = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    log = tmp_path / "server.log"
    with running(command, log=log, ready=port_answers(port), fail=fail, cwd=tmp_path) as server:
        assert http_answers(f"http://127.0.0.1:{port}/")()
    assert server.returncode is not None
    assert not port_answers(port)()
    assert log.exists()


def test_a_server_that_exits_fails_with_its_code(tmp_path: Path) -> None:
    never = port_answers(free_port())
    command = [sys.executable, "-c", "print('broken'); raise SystemExit(3)"]
    server = running(command, log=tmp_path / "log", ready=never, fail=fail)
    with pytest.raises(Failed, match="exited with code 3"), server:
        pytest.fail("ready without answering")
    assert (tmp_path / "log").read_text() == "broken\n"


def test_a_server_that_never_answers_fails_at_the_deadline(tmp_path: Path) -> None:
    command = [sys.executable, "-c", "import time; time.sleep(60)"]
    server = running(command, log=tmp_path / "log", ready=lambda: False, fail=fail, seconds=0.5)
    with pytest.raises(Failed, match=r"did not answer within 0\.5 s"), server:
        pytest.fail("ready without answering")


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is gone, only not yet reaped


def test_own_group_stops_the_children_too(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    # A shell whose child (the "server") writes its pid; the shell itself waits on it.
    command = [
        "bash",
        "-c",
        f"sleep 60 & echo $! > {pid_file}.tmp; mv {pid_file}.tmp {pid_file}; wait",
    ]
    with running(
        command, log=tmp_path / "log", ready=pid_file.exists, fail=fail, own_group=True
    ) as shell:
        child = int(pid_file.read_text())
        assert alive(child)
    assert shell.returncode is not None
    deadline = time.monotonic() + 10
    while alive(child):  # SIGTERM is delivered, not waited for
        assert time.monotonic() < deadline, "the server below the shell outlived it"
        time.sleep(0.05)
