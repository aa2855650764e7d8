"""README's quick start, run as written, then the project's day two: pre-commit, `copier update`.

The quick start runs in a throwaway clone of this repository (its working tree, committed as
release v1.0.0) with uv's tool folders in a fresh place on PATH, up to the step that serves;
that last step, `uv run fastapi dev`, then runs on a free port (the one flag added) for as long as
it takes to sign in as the superuser that the quick start created.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest
import yaml

from tools.local_server import free_port, http_answers, running

from .conftest import TEMPLATE

README = (TEMPLATE / "README.md").read_text()
NOT_COPIED = shutil.ignore_patterns(
    ".git", ".nox", ".venv", "build", "__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache"
)


def command_under(marker: str, text: str = README) -> str:
    """The first fenced block after `marker`, as .ci/run extracts the test command."""
    return text.split(marker, 1)[1].split("```")[1].split("\n", 1)[1].strip()


QUICK_START = command_under("<!-- quick start -->")
SETUP, SERVE = QUICK_START.rsplit(" && ", 1)


def run(cwd: Path, env: dict[str, str], *command: str) -> str:
    result = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{command} in {cwd}:\n{output}"
    return output


def dotenv(project: Path) -> dict[str, str]:
    lines = (project / ".env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


class QuickStart:
    def __init__(self, clone: Path, project: Path, env: dict[str, str], output: str) -> None:
        self.clone, self.project, self.env, self.output = clone, project, env, output


@pytest.fixture(scope="module")
def quick_start(tmp_path_factory: pytest.TempPathFactory) -> QuickStart:
    workdir = tmp_path_factory.mktemp("quickstart")
    clone = workdir / "fastapi-sqlmodel-async"
    shutil.copytree(TEMPLATE, clone, ignore=NOT_COPIED)
    # `uv tool install` as on a user's machine, its folders (~/.local/…) in the workdir.
    tools = workdir / "uv-tools"
    drop = {"VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT", "UV_PYTHON", "PYTHONHOME", "DATABASE_URL",
            "TEST_DATABASE_URL", "PRE_COMMIT_HOME"}  # fmt: skip
    env = {name: value for name, value in os.environ.items() if name not in drop}
    env |= {
        "PATH": f"{tools / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "UV_TOOL_DIR": str(tools / "tools"),
        "UV_TOOL_BIN_DIR": str(tools / "bin"),
        # Commits need an identity; a CI machine may have none.
        "GIT_AUTHOR_NAME": "Template Tests", "GIT_AUTHOR_EMAIL": "tests@example.com",
        "GIT_COMMITTER_NAME": "Template Tests", "GIT_COMMITTER_EMAIL": "tests@example.com",
    }  # fmt: skip
    run(clone, env, "git", "init", "-q", "-b", "main")
    run(clone, env, "git", "add", "-A")
    run(clone, env, "git", "commit", "-qm", "the template")
    run(clone, env, "git", "tag", "-a", "v1.0.0", "-m", "v1.0.0")  # as README cuts a release
    output = run(clone, env, "bash", "-c", SETUP)
    # No warning, e.g. uv's "VIRTUAL_ENV=… does not match the project environment path".
    assert "warning" not in output.lower(), output
    project = workdir / "acme-orders"
    assert "../acme-orders" in SETUP and project.is_dir()
    return QuickStart(clone, project, env, output)


@contextlib.contextmanager
def serving(project: Path, env: dict[str, str]) -> Iterator[str]:
    """README's serve step on a free port, in a process group of its own, stopped afterwards."""
    port = free_port()
    log = project.parent / "serve.log"  # outside the project, which git will track
    base = f"http://127.0.0.1:{port}"

    def fail(why: str) -> NoReturn:
        raise AssertionError(f"{SERVE} {why}:\n{log.read_text()}")

    # fastapi dev runs a reloader and a server below it: own_group stops the whole group.
    with running(
        ["bash", "-c", f"{SERVE} --port {port}"], log=log, fail=fail, cwd=project, env=env,
        ready=http_answers(f"{base}/api/v1/health/live"), seconds=60, interval=0.3, own_group=True,
    ):  # fmt: skip
        yield base


def test_quick_start_names_the_template_by_an_absolute_path() -> None:
    assert SERVE == "uv run fastapi dev"
    # `.` would be recorded as the template's path, and `copier update` would read it as the
    # project itself; "$PWD" is the clone's absolute path.
    assert re.search(r'copier copy .* "\$PWD" \.\./acme-orders', SETUP), SETUP
    assert "--vcs-ref" not in SETUP  # the latest release, as `copier update` takes later
    assert "uv run python -m acme_orders.initial_data" in SETUP.split(" && ")


def test_quick_start_serves_with_an_account_to_sign_in(quick_start: QuickStart) -> None:
    assert "Created superuser 'admin'" in quick_start.output
    # initial_data prints its own lines, not the connection pool's.
    for line in ("Pool disposed", "Pool recreating"):
        assert line not in quick_start.output, quick_start.output
    answers = yaml.safe_load((quick_start.project / ".copier-answers.yml").read_text())
    assert answers["_src_path"] == str(quick_start.clone)
    assert answers["_commit"] == "v1.0.0"
    settings = dotenv(quick_start.project)
    form = {"username": settings["FIRST_SUPERUSER_USERNAME"],
            "password": settings["FIRST_SUPERUSER_PASSWORD"]}  # fmt: skip
    with serving(quick_start.project, quick_start.env) as base:
        with urllib.request.urlopen(
            f"{base}/api/v1/auth/token", data=urllib.parse.urlencode(form).encode(), timeout=30
        ) as reply:
            token = json.load(reply)["access_token"]
        request = urllib.request.Request(
            f"{base}/api/v1/users/me", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as reply:
            assert json.load(reply)["is_superuser"] is True
        with urllib.request.urlopen(f"{base}/docs", timeout=10) as reply:
            assert reply.status == 200


def test_pre_commit_passes_on_the_fresh_project_with_no_network(quick_start: QuickStart) -> None:
    project, env = quick_start.project, quick_start.env
    run(project, env, "git", "init", "-q", "-b", "main")
    run(project, env, "git", "add", "-A")
    # No download at all: uv may use only what the quick start installed, pre-commit starts
    # from an empty home, and git may fetch from no remote (a remote hook would need to).
    offline = env | {"UV_OFFLINE": "1", "GIT_ALLOW_PROTOCOL": "file",
                     "PRE_COMMIT_HOME": str(project.parent / "pre-commit-home")}  # fmt: skip
    output = run(project, offline, "uv", "run", "pre-commit", "run", "--all-files")
    for hook in ("ruff check", "ruff format", "mypy", "no merge conflict markers"):
        assert re.search(rf"^{hook}\.+Passed$", output, re.MULTILINE), output
    # The same hooks refuse what CI refuses: a conflict marker, an unused import.
    (project / "conflict.txt").write_text("<<<<<<< before updating\nmine\n>>>>>>> after updating\n")
    (project / "src" / "acme_orders" / "unused.py").write_text("import os\n")
    run(project, offline, "git", "add", "-A")
    for hook, name in (
        ("check-merge-conflict", "no merge conflict markers"),
        ("ruff", "ruff check"),
    ):
        result = subprocess.run(
            ["uv", "run", "pre-commit", "run", hook, "--all-files"], cwd=project, env=offline,
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert result.returncode != 0, result.stdout
        assert re.search(rf"^{name}\.+Failed$", result.stdout, re.MULTILINE), result.stdout
    run(project, env, "git", "rm", "-qf", "conflict.txt", "src/acme_orders/unused.py")
    run(project, env, "git", "commit", "-qm", "Acme Orders from the template's quick start")


def test_copier_update_brings_the_next_release(quick_start: QuickStart) -> None:
    clone, project, env = quick_start.clone, quick_start.project, quick_start.env
    if not (project / ".git").exists():  # when run alone
        run(project, env, "git", "init", "-q", "-b", "main")
    run(project, env, "git", "add", "-A")
    run(project, env, "git", "commit", "-qm", "before updating", "--allow-empty")
    # Nothing released since: the update succeeds and changes nothing.
    run(project, env, "copier", "update", "--defaults")
    assert run(project, env, "git", "status", "--porcelain") == ""
    # A release as README cuts one: a change, committed, an annotated v1.1.0 tag.
    readme = clone / "template" / "README.md.jinja"
    readme.write_text(readme.read_text() + "\nReleased in v1.1.0.\n")
    run(clone, env, "git", "commit", "-qam", "a change for projects")
    run(clone, env, "git", "tag", "-a", "v1.1.0", "-m", "v1.1.0")
    run(project, env, "copier", "update", "--defaults")
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert answers["_commit"] == "v1.1.0"
    assert "Released in v1.1.0." in (project / "README.md").read_text()
    changed = run(project, env, "git", "status", "--porcelain").split("\n")
    assert all("<<<<<<<" not in path.read_text() for path in project.rglob("*.md")), changed


def test_readme_refers_only_to_files_in_the_repository() -> None:
    for target in re.findall(r"\]\(([^)#]+)\)", README):
        if not target.startswith(("http://", "https://")):
            assert (TEMPLATE / target).exists(), target
    for name in re.findall(r"[\w./-]+\.md\b", README):
        assert (TEMPLATE / name).exists(), name
    # The service's routes live under /api/v1: never shortened to /health/…
    assert not re.search(r"(?<!/api/v1)/health/", README)


def test_the_contract_in_the_repository_is_the_shared_one() -> None:
    shared = TEMPLATE.parent / "shared" / "API.md"
    if not shared.exists():
        pytest.skip(f"no {shared} to compare API.md with")
    assert (TEMPLATE / "API.md").read_text() == shared.read_text()


def test_conflict_advice_resolves_unmerged_files() -> None:
    updating = README.split("## Updating a project", 1)[1].split("\n## ", 1)[0]
    advice = updating[updating.index("delete the markers") :]
    assert advice.index("`git add`") < advice.index("commit")
