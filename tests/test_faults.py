"""A generated service against a real PostgreSQL that stops and starts again.

A throwaway cluster (initdb, pg_ctl) on a free port: the service, served by uvicorn, must
answer 503 (never 500, never hang) while the server is down, keep /health/live at 200, and
recover by itself with everything committed before still there. Skipped, saying why, where
the PostgreSQL server binaries or uv are missing; REQUIRE_POSTGRES=1 makes that a failure.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import Render

PASSWORD = "a long and unguessable passphrase"


def require(condition: bool, reason: str) -> None:
    if condition:
        return
    if os.environ.get("REQUIRE_POSTGRES") == "1":
        pytest.fail(f"{reason}, and REQUIRE_POSTGRES=1")
    pytest.skip(f"{reason}; set REQUIRE_POSTGRES=1 to fail instead")


def postgres_bindir() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: int(Path(path).parts[-3]) if Path(path).parts[-3].isdigit() else 0,
    )
    return Path(candidates[-1]).parent if candidates else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Cluster:
    """A PostgreSQL cluster in a temporary folder; as root, run as the postgres user."""

    def __init__(self, bindir: Path, root: Path) -> None:
        self.bindir = bindir
        self.root = root
        self.data = root / "data"
        self.port = free_port()
        self.prefix: list[str] = []
        if os.geteuid() == 0:
            # initdb refuses to run as root.
            account = pwd.getpwnam("postgres")
            os.chown(root, account.pw_uid, account.pw_gid)
            self.prefix = ["runuser", "-u", "postgres", "--"]

    def run(self, program: str, *args: str) -> None:
        command = [*self.prefix, str(self.bindir / program), *args]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def create(self) -> None:
        self.run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        log = str(self.root / "postgres.log")
        self.run(
            "pg_ctl", "start", "-D", str(self.data), "-w", "-t", "60", "-l", log, "-o", options
        )

    def crash(self) -> None:
        # Immediate: no checkpoint, as after a crash; what was committed must come back.
        self.run("pg_ctl", "stop", "-D", str(self.data), "-m", "immediate", "-w")

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    bindir = postgres_bindir()
    require(bindir is not None, "no PostgreSQL server binaries (initdb, pg_ctl) found")
    assert bindir is not None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            require(False, "running as root without a postgres user to run initdb as")
    root = Path(tempfile.mkdtemp(prefix="template-pg-"))
    cluster = Cluster(bindir, root)
    try:
        cluster.create()
        cluster.start()
        yield cluster
    finally:
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            cluster.crash()
        shutil.rmtree(root, ignore_errors=True)


def project_env(**extra: str) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        # The project's own .venv and settings, not those of whoever runs these tests.
        if name not in {"VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT", "UV_PYTHON"}
        and not name.startswith(("DATABASE_", "TEST_DATABASE"))
    }
    return env | extra


class Http:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        form: dict[str, str] | None = None,
        token: str | None = None,
        timeout: float = 10,
    ) -> tuple[int, dict[str, str], Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        data = None
        if json_body is not None:
            data = json.dumps(json_body).encode()
            headers["Content-Type"] = "application/json"
        elif form is not None:
            data = urllib.parse.urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        request = urllib.request.Request(
            self.base_url + path, data=data, headers=headers, method=method
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                status, response_headers, body = response.status, response.headers, response.read()
        except urllib.error.HTTPError as error:
            status, response_headers, body = error.code, error.headers, error.read()
        return status, dict(response_headers), json.loads(body) if body else None


@contextlib.contextmanager
def serving(project: Path, package: str, env: dict[str, str]) -> Iterator[Http]:
    port = free_port()
    log = project / "uvicorn.log"
    with log.open("w") as output:
        server = subprocess.Popen(
            ["uv", "run", "--no-sync", "uvicorn", f"{package}.main:app", "--port", str(port)],
            cwd=project, env=env, stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while True:
                assert server.poll() is None, log.read_text()
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                    break
                assert time.monotonic() < deadline, "uvicorn did not start within 30 s"
                time.sleep(0.2)
            yield Http(f"http://127.0.0.1:{port}")
        finally:
            server.terminate()
            server.wait(timeout=15)


def test_service_survives_a_postgresql_crash_and_restart(render: Render, cluster: Cluster) -> None:
    require(shutil.which("uv") is not None, "uv is not on PATH")
    project = render()
    package = "acme_orders"
    env = project_env(
        DATABASE_URL=cluster.url,
        ENVIRONMENT="production",
        SECRET_KEY=secrets.token_urlsafe(48),
        # Where a port is closed, connecting fails at once; a timeout bounds the rest.
        DATABASE_CONNECT_TIMEOUT="2",
    )
    subprocess.run(["uv", "sync", "--quiet"], cwd=project, env=env, check=True, timeout=600)
    subprocess.run(
        ["uv", "run", "--no-sync", "alembic", "upgrade", "head"],
        cwd=project, env=env, check=True, capture_output=True, timeout=120,
    )  # fmt: skip

    with serving(project, package, env) as http:
        alice = {"username": "alice", "email": "alice@example.com", "password": PASSWORD}
        status, _, body = http.request("POST", "/api/v1/users", json_body=alice)
        assert status == 201, body
        login = {"username": "alice", "password": PASSWORD}
        status, _, body = http.request("POST", "/api/v1/auth/token", form=login)
        assert status == 200, body
        token = body["access_token"]
        status, _, item = http.request(
            "POST", "/api/v1/items", json_body={"title": "committed before"}, token=token
        )
        assert status == 201, item

        cluster.crash()
        assert http.request("GET", "/api/v1/health/live", timeout=5)[0] == 200
        # urlopen's timeout fails the test if an answer takes longer.
        status, _, body = http.request("GET", "/api/v1/health/ready", timeout=5)
        assert status == 503, body
        for method, path, kwargs in [
            ("GET", "/api/v1/users/me", {"token": token}),
            ("GET", "/api/v1/items", {"token": token}),
            ("POST", "/api/v1/items", {"token": token, "json_body": {"title": "lost"}}),
            ("POST", "/api/v1/auth/token", {"form": login}),
            ("POST", "/api/v1/users", {"json_body": {**alice, "username": "bob"}}),
        ]:
            status, headers, body = http.request(method, path, timeout=10, **kwargs)
            assert status == 503, (method, path, status, body)
            assert body["detail"], body
            assert "retry-after" in {name.lower() for name in headers}
        assert http.request("GET", "/api/v1/health/live", timeout=5)[0] == 200

        cluster.start()
        deadline = time.monotonic() + 30
        while http.request("GET", "/api/v1/health/ready", timeout=5)[0] != 200:
            assert time.monotonic() < deadline, "not ready 30 s after PostgreSQL came back"
            time.sleep(0.2)
        status, _, me = http.request("GET", "/api/v1/users/me", token=token)
        assert (status, me["username"]) == (200, "alice")
        status, _, items = http.request("GET", "/api/v1/items", token=token)
        assert status == 200
        assert [each["title"] for each in items["data"]] == ["committed before"]
        assert http.request("POST", "/api/v1/auth/token", form=login)[0] == 200
        bob = {**alice, "username": "bob", "email": "bob@example.com"}
        assert http.request("POST", "/api/v1/users", json_body=bob)[0] == 201

    log = (project / "uvicorn.log").read_text()
    assert '" 500' not in log, log
    assert PASSWORD not in log
    assert "$argon2" not in log
