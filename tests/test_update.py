"""`copier update` keeps a team's own edits and brings the template's changes."""

from __future__ import annotations

import contextlib
import filecmp
import functools
import json
import secrets
import shutil
import subprocess
from pathlib import Path

import copier
import pytest
import yaml

from .conftest import TEMPLATE
from .servers import postgres_cluster, project_env, require

CONFLICT_MARKERS = ("<<<<<<<", ">>>>>>>")


def git(cwd: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True)
    return result.stdout


@pytest.fixture(autouse=True)
def git_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    # CI machines may have no git identity; commits need one.
    for who in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{who}_NAME", "Template Tests")
        monkeypatch.setenv(f"GIT_{who}_EMAIL", "tests@example.com")


@pytest.fixture
def template_repo(tmp_path: Path) -> Path:
    """A throwaway copy of the template (working tree, committed or not), tagged v1."""
    repo = tmp_path / "template"
    repo.mkdir()
    shutil.copy(TEMPLATE / "copier.yml", repo / "copier.yml")
    shutil.copytree(TEMPLATE / "template", repo / "template")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "v1")
    git(repo, "tag", "v1")
    return repo


def database_url(stack: contextlib.ExitStack, database: str, tmp_path: Path) -> str:
    """A throwaway database of that kind, for as long as `stack` lasts."""
    if database == "postgresql":
        return stack.enter_context(postgres_cluster()).url
    return f"sqlite+aiosqlite:///{tmp_path / 'data.db'}"


def copy_project(template_repo: Path, destination: Path, **answers: object) -> Path:
    copier.run_copy(
        str(template_repo),
        destination,
        data={"project_name": "Acme Orders", **answers},
        defaults=True,
        quiet=True,
        unsafe=False,
    )
    return destination


def release_v2(template_repo: Path) -> None:
    """A realistic template change: an edited module, an edited README line, a new file."""
    package = template_repo / "template" / "src" / "{{ package_name }}"
    params = package / "core" / "params.py"
    params.write_text(params.read_text() + "\n# Added in v2.\nDEFAULT_PAGE_SIZE = 100\n")
    readme = template_repo / "template" / "README.md.jinja"
    readme.write_text(readme.read_text().replace("## Set up", "## Set up (v2)", 1))
    (template_repo / "template" / "CHANGELOG.md").write_text("# Changelog\n\n## v2\n")
    git(template_repo, "add", "-A")
    git(template_repo, "commit", "-qm", "v2")
    git(template_repo, "tag", "v2")


def committed_project(template_repo: Path, destination: Path) -> Path:
    project = copy_project(template_repo, destination)
    git(project, "init", "-q", "-b", "main")
    git(project, "add", "-A")
    git(project, "commit", "-qm", "generated from v1")
    return project


def assert_no_conflicts(project: Path) -> None:
    assert not list(project.rglob("*.rej")), list(project.rglob("*.rej"))
    for path in project.rglob("*"):
        if path.is_file() and not {".git", ".venv"} & set(path.parts):
            text = path.read_text(errors="replace")
            assert not any(marker in text for marker in CONFLICT_MARKERS), path


def test_update_keeps_hand_edits_and_brings_the_change(template_repo: Path, tmp_path: Path) -> None:
    project = committed_project(template_repo, tmp_path / "project")
    package = project / "src" / "acme_orders"

    # The team's own work: a README line, a new module, their .env and lock file.
    readme = project / "README.md"
    readme.write_text(readme.read_text() + "\nOur on-call rota lives in the wiki.\n")
    (package / "reports.py").write_text('"""Our own reports."""\n\nREPORTS: list[str] = []\n')
    env = project / ".env"
    env.write_text(env.read_text() + "\nOUR_OWN_SETTING=1\n")
    (project / "uv.lock").write_text("# our committed lock file\n")
    git(project, "add", "-A", "-f")
    git(project, "commit", "-qm", "our edits")
    env_before = env.read_text()

    release_v2(template_repo)
    copier.run_update(
        str(project), defaults=True, overwrite=True, unsafe=False, quiet=True, conflict="inline"
    )

    assert_no_conflicts(project)
    text = readme.read_text()
    assert "Our on-call rota lives in the wiki." in text  # hand edit kept
    assert "## Set up (v2)" in text  # template change arrived beside it
    assert (package / "reports.py").is_file()
    assert "DEFAULT_PAGE_SIZE = 100" in (package / "core" / "params.py").read_text()
    assert (project / "CHANGELOG.md").is_file()
    assert env.read_text() == env_before  # the user's file, untouched
    assert (project / "uv.lock").read_text() == "# our committed lock file\n"
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert answers["_commit"] == "v2"

    # Apart from the hand edits and the files the user owns, it is a fresh v2 render.
    fresh = copy_project(template_repo, tmp_path / "fresh")
    own = {Path("README.md"), Path(".env"), Path("uv.lock"),
           Path("src/acme_orders/reports.py")}  # fmt: skip
    differing = []
    for path in sorted({*relative_files(project), *relative_files(fresh)} - own):
        a, b = project / path, fresh / path
        if not (a.is_file() and b.is_file() and filecmp.cmp(a, b, shallow=False)):
            differing.append(str(path))
    assert differing == []
    fresh_readme = (fresh / "README.md").read_text()
    assert text == fresh_readme + "\nOur on-call rota lives in the wiki.\n"


def test_update_that_changes_an_answer_removes_the_domain_cleanly(
    template_repo: Path, tmp_path: Path
) -> None:
    project = committed_project(template_repo, tmp_path / "project")
    assert (project / "src" / "acme_orders" / "items").is_dir()
    release_v2(template_repo)
    copier.run_update(
        str(project),
        data={"include_items": False},
        defaults=True,
        overwrite=True,
        unsafe=False,
        quiet=True,
        conflict="inline",
    )
    assert_no_conflicts(project)
    assert not (project / "src" / "acme_orders" / "items").exists()
    assert not (project / "tests" / "items").exists()
    assert "items" not in (project / "src" / "acme_orders" / "api.py").read_text()
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert answers["include_items"] is False
    assert answers["_commit"] == "v2"


def test_the_update_says_what_to_do_next(
    template_repo: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    project = committed_project(template_repo, tmp_path / "project")
    release_v2(template_repo)
    capfd.readouterr()
    copier.run_update(str(project), defaults=True, overwrite=True, unsafe=False)
    message = capfd.readouterr().err
    steps = [line.split("#")[0].strip() for line in message.splitlines() if line.startswith("  ")]
    assert steps[:3] == ["git status", "git diff --check", steps[2]]
    assert steps[2].startswith("grep -rnI -e '^<<<<<<< '")
    assert steps[3:6] == ["uv sync", "uv run alembic upgrade head", "uv run pytest"]


def relative_files(root: Path) -> set[Path]:
    return {
        path.relative_to(root)
        for path in root.rglob("*")
        if path.is_file() and ".git" not in path.relative_to(root).parts
    }


# --- A real project, with data, updated from the previous release -----------------------

# The last release of this template: projects out there were rendered from it.
PREVIOUS_RELEASE = "c860671"

# Run inside the generated project (its own Python and packages), against DATABASE_URL:
# `seed` signs users up and gives them items (`seed-users`: accounts only, for a project
# without items), `check` signs each in and reads them back.
PROJECT_SCRIPT = """
import asyncio, json, sys

from httpx import ASGITransport, AsyncClient

from acme_orders.main import create_app

USERS = {"alice": ["lamp", "desk"], "Bob": ["chair"], "carol": []}
PASSWORD = "a long and unguessable passphrase"


async def main(step: str) -> None:
    transport = ASGITransport(app=create_app())
    async with AsyncClient(transport=transport, base_url="http://test/api/v1") as api:
        async def sign_in(login: str) -> dict[str, str]:
            reply = await api.post("/auth/token", data={"username": login, "password": PASSWORD})
            assert reply.status_code == 200, (login, reply.text)
            return {"Authorization": "Bearer " + reply.json()["access_token"]}

        seen = {}
        for username, titles in USERS.items():
            if step == "seed-users":  # a project without items: accounts only
                body = {"username": username, "email": f"{username}@example.com",
                        "password": PASSWORD}
                reply = await api.post("/users", json=body)
                assert reply.status_code == 201, reply.text
                seen[username] = reply.json()["id"]
                continue
            if step == "seed":
                body = {"username": username, "email": f"{username}@example.com",
                        "password": PASSWORD}
                reply = await api.post("/users", json=body)
                assert reply.status_code == 201, reply.text
                headers = await sign_in(username)
                for title in titles:
                    reply = await api.post("/items", json={"title": title}, headers=headers)
                    assert reply.status_code == 201, reply.text
            # After the update: sign-in ignores case, by name or email.
            login = username.swapcase() if step == "check" else username
            headers = await sign_in(login)
            me = (await api.get("/users/me", headers=headers)).json()
            reply = await api.get("/items", headers=headers)
            assert reply.status_code == 200, reply.text
            items = reply.json()
            seen[username] = [me["id"], sorted(item["title"] for item in items["data"])]
        json.dump(seen, sys.stdout)


asyncio.run(main(sys.argv[1]))
"""


@pytest.fixture
def released_then_current(tmp_path: Path) -> Path:
    """A template repository: the previous release (tag v1), then the working tree (v2)."""
    repo = tmp_path / "template"
    repo.mkdir()
    archive = subprocess.run(
        ["git", "archive", "--format=tar", PREVIOUS_RELEASE, "copier.yml", "template"],
        cwd=TEMPLATE, capture_output=True, check=False,
    )  # fmt: skip
    assert archive.returncode == 0, (
        f"release {PREVIOUS_RELEASE} is not in this clone's history (a shallow clone?): "
        f"{archive.stderr.decode()}"
    )
    subprocess.run(["tar", "-x", "-C", str(repo)], input=archive.stdout, check=True)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "previous release")
    git(repo, "tag", "v1")
    (repo / "copier.yml").unlink()
    shutil.rmtree(repo / "template")
    shutil.copy(TEMPLATE / "copier.yml", repo / "copier.yml")
    shutil.copytree(TEMPLATE / "template", repo / "template")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "current")
    git(repo, "tag", "v2")
    return repo


def files_under(folder: Path) -> set[str]:
    return {
        path.relative_to(folder).as_posix()
        for path in folder.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


def in_project(project: Path, env: dict[str, str], *command: str) -> str:
    result = subprocess.run(
        command, cwd=project, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, f"{' '.join(command)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
@pytest.mark.parametrize(
    ("before", "after"),
    [({}, {}), ({"include_items": False}, {"include_items": True})],
    ids=["items", "items-switched-on"],
)
def test_a_project_with_data_updates_from_the_previous_release(
    released_then_current: Path,
    tmp_path: Path,
    database: str,
    before: dict[str, bool],
    after: dict[str, bool],
) -> None:
    require(shutil.which("uv") is not None, "uv is not on PATH")
    with contextlib.ExitStack() as stack:
        url = database_url(stack, database, tmp_path)
        project = copy_project(released_then_current, tmp_path / "project", **before)
        git(project, "init", "-q", "-b", "main")
        git(project, "add", "-A")
        git(project, "commit", "-qm", "generated from the previous release")
        env = project_env(DATABASE_URL=url, SECRET_KEY=secrets.token_urlsafe(48))
        script = tmp_path / "accounts.py"
        script.write_text(PROJECT_SCRIPT)
        run = functools.partial(in_project, project, env)

        run("uv", "sync", "--quiet")
        run("uv", "run", "--no-sync", "alembic", "upgrade", "head")
        step = "seed" if before.get("include_items", True) else "seed-users"
        seeded = json.loads(run("uv", "run", "--no-sync", "python", str(script), step))
        git(project, "add", "-A")  # the lock file, as a team would commit it
        git(project, "commit", "-qm", "lock")

        copier.run_update(
            str(project), vcs_ref="v2", data=after, defaults=True, overwrite=True, unsafe=False,
            quiet=True, conflict="inline",
        )  # fmt: skip
        assert_no_conflicts(project)
        assert yaml.safe_load((project / ".copier-answers.yml").read_text())["_commit"] == "v2"
        # Test files the template moved (tests/ mirrors src/ since issue 17) leave no old copy
        # behind: the project's tests are exactly those of a fresh render.
        fresh = copy_project(released_then_current, tmp_path / "fresh", **(before | after))
        assert files_under(project / "tests") == files_under(fresh / "tests")
        run("uv", "sync", "--quiet")
        run("uv", "run", "--no-sync", "alembic", "upgrade", "head")
        run("uv", "run", "--no-sync", "alembic", "check")
        checked = json.loads(run("uv", "run", "--no-sync", "python", str(script), "check"))

    if before.get("include_items", True):
        assert seeded == {
            "alice": [seeded["alice"][0], ["desk", "lamp"]],
            "Bob": [seeded["Bob"][0], ["chair"]],
            "carol": [seeded["carol"][0], []],
        }
        assert checked == seeded
    else:  # every account kept, and items work for each of them (none yet)
        assert checked == {name: [user_id, []] for name, user_id in seeded.items()}


# --- An optional feature switched on later, then off, in a project with data -----------

# Every optional feature: its question, requests that must work once it is on (method, path
# under /api/v1, JSON body, expected status; made by a signed-in user) and its own tables.
# A new feature is one line here.
FEATURES = [
    pytest.param(
        "include_items",
        [("POST", "/items", {"title": "lamp"}, 201), ("GET", "/items", None, 200)],
        ["items"],
        id="include_items",
    ),
    pytest.param(
        "email",
        [
            ("POST", "/users/me/email-verification", None, 202),
            ("POST", "/auth/password-recovery", {"email": "alice@example.com"}, 202),
        ],
        ["email_outbox", "email_tokens", "email_rate_limits"],
        id="email",
    ),
]
ALL_FEATURES_OFF = {"include_items": False, "email": False}

# Run inside the project: `seed` signs users up, `check` signs each in (its id printed) and
# makes the feature's requests as the first of them, `count TABLE…` counts rows.
FEATURE_SCRIPT = """
import asyncio, json, sys

from httpx import ASGITransport, AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from acme_orders.core.config import get_settings
from acme_orders.main import create_app

PASSWORD = "a long and unguessable passphrase"


async def accounts(step: str, probes: list) -> dict:
    transport = ASGITransport(app=create_app())
    seen = {}
    async with AsyncClient(transport=transport, base_url="http://test/api/v1") as api:
        for username in ["alice", "Bob", "carol"]:
            if step == "seed":
                body = {"username": username, "email": f"{username}@example.com",
                        "password": PASSWORD}
                reply = await api.post("/users", json=body)
                assert reply.status_code == 201, reply.text
            form = {"username": username, "password": PASSWORD}
            reply = await api.post("/auth/token", data=form)
            assert reply.status_code == 200, (username, reply.text)
            headers = {"Authorization": "Bearer " + reply.json()["access_token"]}
            seen[username] = (await api.get("/users/me", headers=headers)).json()["id"]
            for method, path, body, status in probes if username == "alice" else []:
                reply = await api.request(method, path, json=body, headers=headers)
                assert reply.status_code == status, (method, path, reply.status_code, reply.text)
    return seen


async def count(tables: list) -> dict:
    engine = create_async_engine(get_settings().DATABASE_URL)
    async with engine.connect() as connection:
        counts = {t: await connection.scalar(text(f"SELECT count(*) FROM {t}")) for t in tables}
    await engine.dispose()
    return counts


step, argument = sys.argv[1], json.loads(sys.argv[2])
result = asyncio.run(count(argument) if step == "count" else accounts(step, argument))
json.dump(result, sys.stdout)
"""


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
@pytest.mark.parametrize(("feature", "probes", "tables"), FEATURES)
def test_a_feature_switched_on_then_off_in_a_project_with_data(
    template_repo: Path,
    tmp_path: Path,
    database: str,
    feature: str,
    probes: list[tuple[str, str, object, int]],
    tables: list[str],
) -> None:
    require(shutil.which("uv") is not None, "uv is not on PATH")
    with contextlib.ExitStack() as stack:
        url = database_url(stack, database, tmp_path)
        project = copy_project(template_repo, tmp_path / "project", **ALL_FEATURES_OFF)
        git(project, "init", "-q", "-b", "main")
        env = project_env(DATABASE_URL=url, SECRET_KEY=secrets.token_urlsafe(48))
        script = tmp_path / "feature.py"
        script.write_text(FEATURE_SCRIPT)
        run = functools.partial(in_project, project, env)

        def project_tests() -> None:
            # The project's own suite runs on a database of its own, whichever is migrated
            # here, so it runs once, on SQLite: the updated code, whole and consistent.
            if database == "sqlite":
                in_project(project, project_env(), "uv", "run", "--no-sync", "pytest", "-q",
                           "-x", "-p", "no:cacheprovider", "-m", "not postgresql")  # fmt: skip

        def project_script(step: str, argument: object) -> dict[str, int]:
            output = run(
                "uv", "run", "--no-sync", "python", str(script), step, json.dumps(argument)
            )
            return dict(json.loads(output))

        def update(value: bool) -> None:
            git(project, "add", "-A")
            git(project, "commit", "-qm", f"before {feature}={value}")
            copier.run_update(
                str(project), data={feature: value}, defaults=True, overwrite=True,
                unsafe=False, quiet=True, conflict="inline",
            )  # fmt: skip
            assert_no_conflicts(project)
            assert yaml.safe_load((project / ".copier-answers.yml").read_text())[feature] is value
            run("uv", "sync", "--quiet")
            run("uv", "run", "--no-sync", "alembic", "upgrade", "head")
            run("uv", "run", "--no-sync", "alembic", "check")

        run("uv", "sync", "--quiet")
        run("uv", "run", "--no-sync", "alembic", "upgrade", "head")
        users = project_script("seed", [])

        # On: its revisions are added and applied, the accounts are all there, and its
        # routes work on the migrated database.
        update(True)
        assert project_script("check", probes) == users
        project_tests()
        rows = project_script("count", tables)
        assert all(rows.values()), rows  # the probes wrote to the feature's tables

        # Off again: its code goes, its tables and their rows stay, and all is still well.
        update(False)
        assert project_script("check", []) == users
        assert project_script("count", tables) == rows
        project_tests()
