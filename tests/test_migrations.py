"""Migrations on day two: replicas that start at once, and a newcomer's first new field.

Each case renders a project, installs it (uv sync) and runs `alembic` as a user and a
deployment do, in subprocesses. PostgreSQL comes from TEST_DATABASE_URL's server or
127.0.0.1:5432; without one its cases skip, saying so (they fail with REQUIRE_POSTGRES=1).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import render_into
from .servers import project_env, require

TOOLS = Path(__file__).resolve().parents[1] / "tools"
DEFAULT_POSTGRES = "postgresql+asyncpg://postgres@127.0.0.1:5432"
REPLICAS = 6
ROUNDS = 3


def alembic_env(**extra: str) -> dict[str, str]:
    env = project_env(**extra)
    # Each of the many short runs below imports the whole application: let the first one
    # leave bytecode for the others, even where the machine turns that off.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def python(project: Path, *args: str, url: str | None = None) -> subprocess.CompletedProcess[str]:
    env = alembic_env(**({"DATABASE_URL": url} if url else {}))
    return subprocess.run(
        [str(project / ".venv" / "bin" / "python"), *args],
        cwd=project, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def alembic(project: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return python(project, "-m", "alembic", *args, url=url)


def installed(destination: Path, **answers: object) -> Path:
    require(shutil.which("uv") is not None, "uv is not on PATH")
    project = render_into(destination, **answers)
    subprocess.run(["uv", "sync", "--quiet"], cwd=project, env=project_env(), check=True)
    return project


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return installed(tmp_path_factory.mktemp("migrations") / "project")


@pytest.fixture(scope="module")
def project_without_items(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return installed(tmp_path_factory.mktemp("migrations") / "project", include_items=False)


@pytest.fixture(scope="module")
def postgres_server(project: Path) -> str:
    given = os.environ.get("TEST_DATABASE_URL") or DEFAULT_POSTGRES
    server = given.rsplit("/", 1)[0] if given.count("/") > 2 else given
    probe = python(project, str(TOOLS / "pg_admin.py"), "probe", server).stdout.strip()
    require(probe == "ok", f"PostgreSQL at {server.split('@')[-1]} does not answer ({probe})")
    return server


@contextlib.contextmanager
def fresh_postgres_database(project: Path, server: str) -> Iterator[str]:
    name = f"template_{secrets.token_hex(4)}"
    admin = str(TOOLS / "pg_admin.py")
    assert python(project, admin, "create", server, name).returncode == 0
    try:
        yield f"{server}/{name}"
    finally:
        python(project, admin, "drop", server, name)


# Holds the migrations lock, as a replica that is migrating would, until `waiters` others
# queue for it; then lets go, so that they all go for it at the same instant.
HOLD_LOCK = """
import asyncio, sys
import asyncpg

async def main(dsn: str, lock_id: int, waiters: int) -> None:
    connection = await asyncpg.connect(dsn)
    await connection.execute("SELECT pg_advisory_lock($1)", lock_id)
    print("held", flush=True)
    queued = (
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    while await connection.fetchval(queued) < waiters:
        await asyncio.sleep(0.05)
    await connection.close()

asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
"""


def migrations_lock_id(project: Path) -> int:
    env_py = (project / "migrations" / "env.py").read_text()
    match = re.search(r"^MIGRATIONS_LOCK_ID = ([\d_]+)$", env_py, re.MULTILINE)
    assert match, "migrations/env.py defines no MIGRATIONS_LOCK_ID"
    return int(match[1])


def start_upgrade(project: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(project / ".venv" / "bin" / "python"), "-m", "alembic", "upgrade", "head"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_six_replicas_that_migrate_at_once_all_succeed(project: Path, postgres_server: str) -> None:
    python_path = str(project / ".venv" / "bin" / "python")
    for round_ in range(ROUNDS):
        with fresh_postgres_database(project, postgres_server) as url:
            env = alembic_env(DATABASE_URL=url)
            holder = None
            if round_ > 0:
                # Later rounds: six replicas queue behind one that is migrating, and race
                # for the lock when it lets go. (The first round: six start on their own.)
                dsn = url.replace("postgresql+asyncpg://", "postgresql://")
                lock = [python_path, "-c", HOLD_LOCK, dsn, str(migrations_lock_id(project)),
                        str(REPLICAS)]  # fmt: skip
                holder = subprocess.Popen(lock, env=env, stdout=subprocess.PIPE, text=True)
                assert holder.stdout is not None
                assert holder.stdout.readline().strip() == "held"
            replicas = [start_upgrade(project, env) for _ in range(REPLICAS)]
            try:
                deadline = time.monotonic() + 300  # a guard against a hang, not a measurement
                while holder is not None and holder.poll() is None:
                    if all(replica.poll() is not None for replica in replicas):
                        pytest.fail("the replicas did not wait for the migrations lock")
                    assert time.monotonic() < deadline, "the replicas never all queued"
                    time.sleep(0.1)
                outputs = [replica.communicate(timeout=300)[0] for replica in replicas]
            finally:
                for process in [*replicas, *([holder] if holder else [])]:
                    if process.poll() is None:
                        process.kill()
                        process.wait()
            for replica, output in zip(replicas, outputs, strict=True):
                assert replica.returncode == 0, output
            # One of them built the schema; the others waited, then found it done.
            builders = [output for output in outputs if "Running upgrade  -> " in output]
            assert len(builders) == 1, outputs


# What the generated README's walk-through has a newcomer do: a field with a default.
NEW_FIELD = "    priority: int = 0\n"
SEED = """
import asyncio, sys
from {package}.core.db import SessionFactory, engine
from {package}.users.models import UserCreate
from {package}.users.service import create_user

async def main() -> None:
    async with SessionFactory() as session:
        user = await create_user(
            session, UserCreate(username="first", email="first@example.com", password="long enough")
        )
        if sys.argv[1] == "items":
            from {package}.items.models import ItemCreate
            from {package}.items.service import create_item
            await create_item(session, ItemCreate(title="first"), user.id)
    await engine.dispose()

asyncio.run(main())
"""
READ = """
import asyncio, json, sys
from {package}.core.db import engine

async def main() -> None:
    async with engine.connect() as connection:
        rows = await connection.exec_driver_sql(f"SELECT priority FROM {{sys.argv[1]}}")
        print(json.dumps([list(row) for row in rows]))
    await engine.dispose()

asyncio.run(main())
"""


@contextlib.contextmanager
def field_added(project: Path, table: str, field: str) -> Iterator[Path]:
    """`field` added to the table model of `table`; the model and versions/ restored after."""
    domain = "items" if table == "items" else "users"
    models = project / "src" / "acme_orders" / domain / "models.py"
    original = models.read_text()
    versions = project / "migrations" / "versions"
    before = set(versions.iterdir())
    edited, count = re.subn(r"(?m)^class \w+\(.*table=True\):\n", lambda m: m[0] + field, original)
    assert count == 1, f"no table model in {models}"
    models.write_text(edited)
    try:
        yield versions
    finally:
        models.write_text(original)
        for path in set(versions.iterdir()) - before:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()


@contextlib.contextmanager
def database(project: Path, kind: str, request: pytest.FixtureRequest) -> Iterator[str]:
    if kind == "postgresql":
        server = request.getfixturevalue("postgres_server")
        with fresh_postgres_database(project, server) as url:
            yield url
    else:
        folder = Path(request.getfixturevalue("tmp_path"))
        yield f"sqlite+aiosqlite:///{folder / 'app.db'}"


@pytest.mark.parametrize(
    ("table", "kind"),
    [("items", "sqlite"), ("items", "postgresql"), ("users", "sqlite")],
    ids=["items-sqlite", "items-postgresql", "no-items-users-sqlite"],
)
def test_a_new_field_with_a_default_migrates_a_table_that_has_rows(
    table: str, kind: str, request: pytest.FixtureRequest
) -> None:
    project = request.getfixturevalue("project" if table == "items" else "project_without_items")
    with database(project, kind, request) as url:
        assert alembic(project, url, "upgrade", "head").returncode == 0
        seeded = python(project, "-c", SEED.format(package="acme_orders"), table, url=url)
        assert seeded.returncode == 0, seeded.stderr
        with field_added(project, table, NEW_FIELD) as versions:
            made = alembic(project, url, "revision", "--autogenerate", "-m", "add priority")
            assert made.returncode == 0, made.stderr
            # On a branch of the project's own, beside the template's core and feature ones.
            (revision,) = versions.glob("*add_priority.py")
            assert revision.name == "app_0001_add_priority.py"
            assert 'branch_labels: str | Sequence[str] | None = ("app",)' in revision.read_text()
            assert "server_default" in revision.read_text()
            upgraded = alembic(project, url, "upgrade", "head")
            assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
            read = python(project, "-c", READ.format(package="acme_orders"), table, url=url)
            assert read.returncode == 0, read.stderr
            assert json.loads(read.stdout) == [[0]]
            # The models and the migrations agree, server default and all.
            checked = alembic(project, url, "check")
            assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_new_field_without_a_default_is_refused_by_name(
    project: Path, request: pytest.FixtureRequest
) -> None:
    with database(project, "sqlite", request) as url:
        assert alembic(project, url, "upgrade", "head").returncode == 0
        with field_added(project, "items", "    rank: int\n") as versions:
            before = set(versions.iterdir())
            made = alembic(project, url, "revision", "--autogenerate", "-m", "add rank")
            assert made.returncode != 0
            assert "items.rank is NOT NULL" in made.stderr
            assert "default" in made.stderr
            assert "Traceback" not in made.stderr
            assert set(versions.iterdir()) == before


def test_the_readme_adds_a_resource_as_written(project: Path, tmp_path: Path) -> None:
    """The generated README's walk-through, its commands run as written: `orders` from items."""
    section = (project / "README.md").read_text().split("**Add a resource**", 1)[1]
    section = section.split("\n## ", 1)[0]
    blocks = [textwrap.dedent(block) for block in re.findall(r"```bash\n(.*?)```", section, re.S)]
    assert len(blocks) == 2, section
    # Steps 2 and 3 are edits by hand: each line the README gives, after its items counterpart.
    edits = [
        ("src/acme_orders/api.py", "from .items.routes import router as items_router",
         "from .orders.routes import router as orders_router"),
        ("src/acme_orders/api.py", "api_router.include_router(items_router)",
         "api_router.include_router(orders_router)"),
        ("migrations/env.py", "from acme_orders.items.models import Item  # noqa: F401 (registers the table)",
         "from acme_orders.orders.models import Order  # noqa: F401"),
    ]  # fmt: skip
    originals = {name: (project / name).read_text() for name, _, _ in edits}
    versions = project / "migrations" / "versions"
    before = set(versions.iterdir())
    env = alembic_env(DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'app.db'}")

    def bash(script: str) -> str:
        done = subprocess.run(["bash", "-euc", script], cwd=project, env=env, text=True,
                              capture_output=True, timeout=900)  # fmt: skip
        assert done.returncode == 0, f"{script}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done.stdout

    try:
        bash("uv run alembic upgrade head")
        bash(blocks[0])
        for name, after, line in edits:
            assert f"`{line}`" in section, line
            text = (project / name).read_text()
            assert f"{after}\n" in text, (name, after)
            (project / name).write_text(text.replace(f"{after}\n", f"{after}\n{line}\n", 1))
        bash(blocks[1])
        assert (versions / "app_0001_add_orders.py").is_file()
        paths = json.loads(
            bash("uv run python -c 'import json; from acme_orders.main import create_app; "
                 "print(json.dumps(create_app().openapi()[\"paths\"]))'")
        )  # fmt: skip
        assert "/api/v1/orders/{order_id}" in paths
        ids = {op["operationId"] for path in paths.values() for op in path.values()}
        assert not {i for i in ids if "item" in i} & {i.replace("item", "order") for i in ids}
        assert {i.replace("item", "order") for i in ids if "item" in i} <= ids
        assert "Order not found" in (project / "src/acme_orders/orders/service.py").read_text()
    finally:
        for name, text in originals.items():
            (project / name).write_text(text)
        for path in set(versions.iterdir()) - before:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        shutil.rmtree(project / "src" / "acme_orders" / "orders", ignore_errors=True)
        shutil.rmtree(project / "tests" / "orders", ignore_errors=True)
