"""A generated service against a real PostgreSQL that crashes and starts again.

A throwaway cluster (initdb, pg_ctl) on a free port: the service, served by uvicorn, must
answer 503 (never 500, never hang) while the server is down, keep /health/live at 200, and
recover by itself with everything committed before still there.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest

from .conftest import Render
from .servers import Cluster, postgres_cluster, project_env, require, serving

PASSWORD = "a long and unguessable passphrase"


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    with postgres_cluster() as cluster:
        yield cluster


def test_service_survives_a_postgresql_crash_and_restart(render: Render, cluster: Cluster) -> None:
    require(shutil.which("uv") is not None, "uv is not on PATH")
    project = render()
    package = "acme_orders"
    env = project_env(
        DATABASE_URL=cluster.url,
        ENVIRONMENT="production",
        SECRET_KEY=secrets.token_urlsafe(48),
        # Production needs an SMTP server to start (with email); nothing listens there.
        SMTP_HOST="127.0.0.1",
        SMTP_PORT="9",
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
