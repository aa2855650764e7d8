"""The production serve command, `python -m <package>`, bounds what one client may hold.

Against the real server process, over real sockets, each exchange bounded in time (a socket
timeout far above the server's own limits) and in size: request line and headers past the
limit get 431 and a closed connection, a client that never finishes its headers is dropped,
an idle keep-alive connection is closed, and X-Forwarded-For from loopback is not believed
unless FORWARDED_ALLOW_IPS says so.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import render_into
from .servers import Http, project_env, require, serving

# Far above the server's own limits (seconds): only a server that never closes reaches it.
PATIENCE = 60
REQUEST = b"GET /api/v1/health/live HTTP/1.1\r\nHost: test\r\n"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require(shutil.which("uv") is not None, "uv is not on PATH")
    project = render_into(tmp_path_factory.mktemp("serving") / "project", database="sqlite")
    env = project_env(DATABASE_URL=f"sqlite+aiosqlite:///{project / 'app.db'}")
    subprocess.run(["uv", "sync", "--quiet"], cwd=project, env=env, check=True)
    subprocess.run(
        ["uv", "run", "--no-sync", "alembic", "upgrade", "head"],
        cwd=project, env=env, check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    return project


def served_env(project: Path, **extra: str) -> dict[str, str]:
    return project_env(DATABASE_URL=f"sqlite+aiosqlite:///{project / 'app.db'}", **extra)


@pytest.fixture(scope="module")
def server(project: Path) -> Iterator[Http]:
    # One free failure per account and address, so that two attempts tell whether the server
    # took them for one client address or two.
    env = served_env(project, SIGN_IN_ACCOUNT_FREE_FAILURES="1")
    with serving(project, "acme_orders", env, production=True) as http:
        yield http


def connect(http: Http) -> socket.socket:
    parts = urllib.parse.urlsplit(http.base_url)
    return socket.create_connection((parts.hostname, parts.port), timeout=PATIENCE)


def answer_and_close(sock: socket.socket, limit: int = 1 << 20) -> tuple[bytes, bool]:
    """What the server sends until it closes (True), or until PATIENCE runs out (False)."""
    received = b""
    with sock:
        while len(received) < limit:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                return received, True
            except TimeoutError:
                return received, False
            if not chunk:
                return received, True
            received += chunk
    return received, False


def send(sock: socket.socket, data: bytes) -> None:
    # The server may refuse and close before it has read everything.
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        sock.sendall(data)


@pytest.mark.parametrize(
    "request_bytes",
    [
        REQUEST + b"X-Big: " + b"a" * (64 * 1024) + b"\r\n\r\n",
        REQUEST + b"a: b\r\n" * 100_000 + b"\r\n",
        b"GET /" + b"a" * (64 * 1024) + b" HTTP/1.1\r\nHost: test\r\n\r\n",
    ],
    ids=["64-KiB-header", "100000-headers", "64-KiB-path"],
)
def test_headers_past_the_limit_get_431_and_the_connection_closed(
    server: Http, request_bytes: bytes
) -> None:
    sock = connect(server)
    send(sock, request_bytes)
    answer, closed = answer_and_close(sock)
    assert closed
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:100]


def test_headers_within_the_limit_are_served(server: Http) -> None:
    sock = connect(server)
    send(sock, REQUEST + b"X-Fair: " + b"a" * (16 * 1024) + b"\r\nConnection: close\r\n\r\n")
    answer, closed = answer_and_close(sock)
    assert closed
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:100]


def test_a_body_after_headers_that_end_across_two_reads_is_no_header(server: Http) -> None:
    # The blank line that ends the headers straddles two reads; the body behind it (over the
    # header limit) must not be counted as headers.
    body = b"a" * (40 * 1024)
    sock = connect(server)
    head = b"POST /api/v1/health/live HTTP/1.1\r\nHost: test\r\nConnection: close\r\n"
    send(sock, head + f"Content-Length: {len(body)}\r\n\r".encode())
    time.sleep(0.2)  # so that the server reads the rest apart (no timing is asserted)
    send(sock, b"\n" + body)
    answer, closed = answer_and_close(sock)
    assert closed
    assert answer.startswith(b"HTTP/1.1 405 "), answer[:100]


def test_a_body_behind_headers_in_the_same_read_is_no_header(server: Http) -> None:
    # Headers and a body over the header limit sent at once: only the headers count.
    body = b"a" * (40 * 1024)
    sock = connect(server)
    head = b"POST /api/v1/health/live HTTP/1.1\r\nHost: test\r\nConnection: close\r\n"
    send(sock, head + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    answer, closed = answer_and_close(sock)
    assert closed
    assert answer.startswith(b"HTTP/1.1 405 "), answer[:100]


def one_answer(sock: socket.socket) -> bytes:
    """One response (status line, headers, a Content-Length body) on a kept-alive connection."""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(65536)
        assert chunk, f"closed after {received[:100]!r}"
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk
        body += chunk
    assert len(body) == length, "more than one response"
    return head


def test_each_request_of_a_connection_is_counted_on_its_own(server: Http) -> None:
    # 20 KiB of headers each: two of them together are over the limit, one is not.
    fair = REQUEST + b"X-Fair: " + b"a" * (20 * 1024) + b"\r\n\r\n"
    sock = connect(server)
    for _ in range(2):
        send(sock, fair)
        assert one_answer(sock).startswith(b"HTTP/1.1 200 ")
    # Pipelined: both requests in one send, the second closing the connection.
    send(sock, fair + fair[:-2] + b"Connection: close\r\n\r\n")
    answer, closed = answer_and_close(sock)
    assert closed
    assert answer.count(b"HTTP/1.1 200 ") == 2, answer[:100]
    # The limit still holds for a request after others on the same connection.
    sock = connect(server)
    send(sock, fair)
    assert one_answer(sock).startswith(b"HTTP/1.1 200 ")
    send(sock, REQUEST + b"X-Big: " + b"a" * (64 * 1024) + b"\r\n\r\n")
    answer, closed = answer_and_close(sock)
    assert closed
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:100]


@pytest.mark.parametrize("sent", [b"", REQUEST], ids=["nothing", "unfinished-headers"])
def test_a_client_that_never_finishes_its_headers_is_dropped(server: Http, sent: bytes) -> None:
    sock = connect(server)
    send(sock, sent)
    answer, closed = answer_and_close(sock)
    assert closed, f"still connected after {PATIENCE} s"
    assert answer == b""


def test_an_idle_keep_alive_connection_is_closed(server: Http) -> None:
    sock = connect(server)
    send(sock, REQUEST + b"\r\n")
    answer, closed = answer_and_close(sock)
    assert closed, f"still connected after {PATIENCE} s"
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert answer.count(b"HTTP/1.1 ") == 1


def failed_sign_in_from(http: Http, forwarded_for: str) -> int:
    sock = connect(http)
    form = b"username=zed&password=not-the-password"
    send(
        sock,
        b"POST /api/v1/auth/token HTTP/1.1\r\nHost: test\r\nConnection: close\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        + f"X-Forwarded-For: {forwarded_for}\r\nContent-Length: {len(form)}\r\n\r\n".encode()
        + form,
    )
    answer, _ = answer_and_close(sock)
    return int(answer.split(b" ", 2)[1])


def test_x_forwarded_for_from_loopback_is_not_believed_by_default(server: Http) -> None:
    # Both attempts come from 127.0.0.1, whatever they claim: one pair, whose one free
    # failure is spent by the first.
    assert failed_sign_in_from(server, "192.0.2.1") == 401
    assert failed_sign_in_from(server, "192.0.2.2") == 429


def test_x_forwarded_for_is_believed_from_the_proxies_named(project: Path) -> None:
    env = served_env(project, SIGN_IN_ACCOUNT_FREE_FAILURES="1", FORWARDED_ALLOW_IPS="127.0.0.1")
    with serving(project, "acme_orders", env, production=True) as http:
        assert failed_sign_in_from(http, "192.0.2.3") == 401
        assert failed_sign_in_from(http, "192.0.2.4") == 401
        assert failed_sign_in_from(http, "192.0.2.4") == 429


def test_every_line_of_several_workers_and_their_supervisor_is_json(project: Path) -> None:
    env = served_env(project, WEB_CONCURRENCY="2", LOG_FORMAT="json", LOG_LEVEL="INFO")
    with serving(project, "acme_orders", env, production=True) as http:
        assert http.request("GET", "/api/v1/health/live")[0] == 200
    lines = [line for line in (project / "uvicorn.log").read_text().splitlines() if line]
    records = [json.loads(line) for line in lines]  # a plain-text line fails here
    messages = " ".join(str(record.get("message", "")) for record in records)
    # The supervisor's own lines and each worker's are among them.
    assert "parent process" in messages
    assert messages.count("Started server process") == 2
