"""Servers for the template's tests: a throwaway PostgreSQL cluster, PgBouncer, uvicorn.

Missing programs skip the tests that need them, saying why; REQUIRE_POSTGRES=1 makes a
missing PostgreSQL a failure instead.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from tools.local_server import free_port, port_answers, running


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


@contextlib.contextmanager
def postgres_cluster() -> Iterator[Cluster]:
    """A fresh cluster, started; crashed and removed afterwards."""
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
def serving(
    project: Path, package: str, env: dict[str, str], *, production: bool = False
) -> Iterator[Http]:
    """Serve the project with `uvicorn <package>.main:app`, or as production does
    (`python -m <package>`, HOST and PORT from the environment)."""
    port = free_port()
    log = project / "uvicorn.log"
    if production:
        command = ["uv", "run", "--no-sync", "python", "-m", package]
        env = env | {"HOST": "127.0.0.1", "PORT": str(port)}
    else:
        command = ["uv", "run", "--no-sync", "uvicorn", f"{package}.main:app", "--port", str(port)]

    def fail(why: str) -> NoReturn:
        raise AssertionError(f"uvicorn {why}:\n{log.read_text()}")

    with running(command, log=log, ready=port_answers(port), fail=fail, cwd=project, env=env):
        yield Http(f"http://127.0.0.1:{port}")


@contextlib.contextmanager
def pgbouncer(cluster: Cluster) -> Iterator[str]:
    """PgBouncer in transaction mode in front of `cluster`; yields its database URL."""
    program = shutil.which("pgbouncer") or shutil.which("/usr/sbin/pgbouncer")
    if program is None:
        pytest.skip("pgbouncer is not installed (e.g. apt-get install pgbouncer)")
    port = free_port()
    root = cluster.root
    (root / "users.txt").write_text('"postgres" ""\n')
    (root / "pgbouncer.ini").write_text(
        f"""[databases]
* = host=127.0.0.1 port={cluster.port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {root / "users.txt"}
pool_mode = transaction
default_pool_size = 2
logfile = {root / "pgbouncer.log"}
pidfile = {root / "pgbouncer.pid"}
"""
    )
    if cluster.prefix:
        account = pwd.getpwnam("postgres")
        for name in ("users.txt", "pgbouncer.ini"):
            os.chown(root / name, account.pw_uid, account.pw_gid)
    command = [*cluster.prefix, program, "-d", str(root / "pgbouncer.ini")]
    subprocess.run(command, check=True, capture_output=True, timeout=30)
    try:
        # PgBouncer detaches (-d), so it is waited for here rather than by `running`.
        deadline, answers = time.monotonic() + 10, port_answers(port)
        while not answers():
            assert time.monotonic() < deadline, (root / "pgbouncer.log").read_text()
            time.sleep(0.1)
        yield f"postgresql+asyncpg://postgres@127.0.0.1:{port}/postgres"
    finally:
        pid_file = root / "pgbouncer.pid"
        if pid_file.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid_file.read_text().strip()), 15)
