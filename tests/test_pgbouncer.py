"""A generated service behind PgBouncer in transaction mode, with DATABASE_PGBOUNCER=true.

Without the setting, asyncpg's prepared statements collide on PgBouncer's shared server
connections ("prepared statement ... already exists"); with it, the whole HTTP contract
holds. Needs the PostgreSQL server binaries and pgbouncer; skipped, saying why, without.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from pathlib import Path

from .conftest import Render
from .servers import pgbouncer, postgres_cluster, project_env, require, serving

TOOLS = Path(__file__).resolve().parents[1] / "tools"


def test_service_serves_the_contract_through_pgbouncer(render: Render) -> None:
    require(shutil.which("uv") is not None, "uv is not on PATH")
    project = render()
    superuser_password = secrets.token_urlsafe(16)
    with postgres_cluster() as cluster, pgbouncer(cluster) as bouncer_url:
        direct = project_env(DATABASE_URL=cluster.url)
        subprocess.run(["uv", "sync", "--quiet"], cwd=project, env=direct, check=True)
        # Migrations go to PostgreSQL itself, as the generated README says.
        subprocess.run(
            ["uv", "run", "--no-sync", "alembic", "upgrade", "head"],
            cwd=project, env=direct, check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        env = project_env(
            DATABASE_URL=bouncer_url,
            DATABASE_PGBOUNCER="true",
            ENVIRONMENT="production",
            SECRET_KEY=secrets.token_urlsafe(48),
            # Production needs an SMTP server to start (with email); nothing listens there,
            # and the walk checks only what needs no mailbox.
            SMTP_HOST="127.0.0.1",
            SMTP_PORT="9",
            FIRST_SUPERUSER_USERNAME="root",
            FIRST_SUPERUSER_EMAIL="root@example.com",
            FIRST_SUPERUSER_PASSWORD=superuser_password,
        )
        subprocess.run(
            ["uv", "run", "--no-sync", "python", "-m", "acme_orders.initial_data"],
            cwd=project, env=env, check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        with serving(project, "acme_orders", env) as http:
            walk = subprocess.run(
                ["uv", "run", "--no-sync", "python", str(TOOLS / "api_contract.py"), http.base_url],
                cwd=project, capture_output=True, text=True, timeout=300,
                env=env | {"SUPERUSER_USERNAME": "root", "SUPERUSER_PASSWORD": superuser_password},
            )  # fmt: skip
        assert walk.returncode == 0, walk.stdout + walk.stderr
        assert "0 failed" in walk.stdout
    assert '" 500' not in (project / "uvicorn.log").read_text()
