"""Every answer, one at a time away from the defaults, and the leanest and fullest projects."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import render_into
from .test_render import TEMPLATE_SYNTAX, files_of

ONE_AWAY: dict[str, dict[str, Any]] = {
    "defaults": {},
    "python_version=3.11": {"python_version": "3.11"},
    "python_version=3.13": {"python_version": "3.13"},
    "database=sqlite": {"database": "sqlite"},
    "include_items=false": {"include_items": False},
    "email=false": {"email": False},
    "ci=gitlab": {"ci": "gitlab"},
    "ci=none": {"ci": "none"},
    "docker=false": {"docker": False},
    "kubernetes=true": {"kubernetes": True},
}
NAMED = {
    "leanest": {"database": "sqlite", "include_items": False, "ci": "none", "docker": False,
                "python_version": "3.11", "kubernetes": False, "email": False},
    "fullest": {"database": "postgresql", "include_items": True, "ci": "github", "docker": True,
                "python_version": "3.13", "kubernetes": True, "email": True},
}  # fmt: skip
MATRIX = ONE_AWAY | NAMED

# Characters Windows refuses in a file name, and names ending in a dot or a space.
WINDOWS_REFUSES = re.compile(r'[<>:"|?*\\]|[. ]$')


Case = tuple[Path, dict[str, Any]]


@pytest.fixture(scope="module", params=list(MATRIX.values()), ids=list(MATRIX))
def case(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Case:
    """Each answer set rendered once for all the tests of this module."""
    answers: dict[str, Any] = request.param
    return render_into(tmp_path_factory.mktemp("matrix") / "project", **answers), answers


def answer(answers: dict[str, Any], name: str) -> Any:
    defaults = {"database": "postgresql", "include_items": True, "ci": "github", "docker": True,
                "python_version": "3.12", "kubernetes": False, "email": True}  # fmt: skip
    return answers.get(name, defaults[name])


def test_every_answer_renders_a_clean_project(case: Case) -> None:
    project, _answers = case
    for path in files_of(project):
        relative = path.relative_to(project)
        for part in relative.parts:
            assert not WINDOWS_REFUSES.search(part), relative
        if path.suffix != ".mako" and path.parent.name != "templates":
            assert not TEMPLATE_SYNTAX.search(path.read_text()), relative
        if path.suffix in {".yml", ".yaml"}:
            assert yaml.safe_load(path.read_text()) is not None, relative


def test_every_answer_is_already_formatted(case: Case) -> None:
    project, _answers = case
    ruff = shutil.which("ruff") or f"{sys.prefix}/bin/ruff"
    result = subprocess.run(
        [ruff, "format", "--check", "--diff", "."], cwd=project, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_answers_turn_files_on_and_off(case: Case) -> None:
    project, answers = case
    ci, docker = answer(answers, "ci"), answer(answers, "docker")
    assert (project / ".github" / "workflows" / "ci.yml").exists() == (ci == "github")
    assert (project / ".gitlab-ci.yml").exists() == (ci == "gitlab")
    for name in ("Dockerfile", "compose.yaml", ".dockerignore", "docker-entrypoint.sh"):
        assert (project / name).exists() == docker, name
    kubernetes = answer(answers, "kubernetes")
    assert (project / "deploy" / "kubernetes" / "kustomization.yaml").exists() == kubernetes
    assert (project / "deploy").exists() == kubernetes
    hooks = yaml.safe_load((project / ".pre-commit-config.yaml").read_text())
    hook_ids = {hook["id"] for repo in hooks["repos"] for hook in repo["hooks"]}
    assert {"ruff", "ruff-format", "mypy", "check-merge-conflict"} <= hook_ids
    has_items = answer(answers, "include_items")
    assert (project / "src" / "acme_orders" / "items").exists() == has_items
    has_email = answer(answers, "email")
    assert (project / "src" / "acme_orders" / "email").exists() == has_email
    assert (project / "tests" / "email").exists() == has_email


def test_database_answer_reaches_ci_and_compose(case: Case) -> None:
    project, answers = case
    postgres = answer(answers, "database") == "postgresql"
    ci = answer(answers, "ci")
    if ci == "github":
        workflow = yaml.safe_load((project / ".github" / "workflows" / "ci.yml").read_text())
        assert ("postgres" in workflow["jobs"]) == postgres
    if ci == "gitlab":
        pipeline = yaml.safe_load((project / ".gitlab-ci.yml").read_text())
        assert ("postgres" in pipeline) == postgres
    if answer(answers, "docker"):
        compose = yaml.safe_load((project / "compose.yaml").read_text())
        assert ("db" in compose["services"]) == postgres
        url = compose["services"]["app"]["environment"]["DATABASE_URL"]
        assert url.startswith("postgresql+asyncpg://" if postgres else "sqlite+aiosqlite://")


def test_every_deployment_serves_with_the_production_command(case: Case) -> None:
    project, answers = case
    if not answer(answers, "docker"):
        return
    dockerfile = (project / "Dockerfile").read_text()
    commands = [line for line in dockerfile.splitlines() if line.startswith("CMD ")]
    assert commands == ['CMD ["python", "-m", "acme_orders"]']
    compose = yaml.safe_load((project / "compose.yaml").read_text())
    app = compose["services"]["app"]
    assert "command" not in app  # the image's
    # Wired, from .env, and empty (trust no proxy) by default.
    assert app["environment"]["FORWARDED_ALLOW_IPS"] == "${FORWARDED_ALLOW_IPS:-}"
    if answer(answers, "database") == "postgresql":
        # No password written into compose.yaml: .env's, with a default for local use only.
        password = "${POSTGRES_PASSWORD:-postgres}"
        assert compose["services"]["db"]["environment"]["POSTGRES_PASSWORD"] == password
        assert f"postgres:{password}@db:" in app["environment"]["DATABASE_URL"]
        env = (project / ".env").read_text()
        generated = re.search(r"^POSTGRES_PASSWORD=(\w{32})$", env, re.MULTILINE)
        assert generated is not None


def test_python_version_reaches_every_tool(case: Case) -> None:
    project, answers = case
    version = answer(answers, "python_version")
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    assert pyproject["project"]["requires-python"] == f">={version}"
    assert pyproject["tool"]["ruff"]["target-version"] == f"py{version.replace('.', '')}"
    assert pyproject["tool"]["mypy"]["python_version"] == version
    if answer(answers, "docker"):
        dockerfile = (project / "Dockerfile").read_text()
        assert f"python{version}-" in dockerfile and f"python:{version}-" in dockerfile
    if answer(answers, "ci") == "github":
        assert f'python-version: "{version}"' in (project / ".github/workflows/ci.yml").read_text()
    if answer(answers, "ci") == "gitlab":
        assert f"uv:python{version}-" in (project / ".gitlab-ci.yml").read_text()


# --- The linters a reviewer runs: zizmor, GitHub's and GitLab's schemas, hadolint -------------
# Installed by `nox -s tests`; offline, so that they give the same answer everywhere.


def tool(name: str) -> str:
    return shutil.which(name) or f"{sys.prefix}/bin/{name}"


def assert_clean(*command: str | Path) -> None:
    result = subprocess.run(
        [tool(str(command[0])), *map(str, command[1:])], capture_output=True, text=True
    )
    assert result.returncode == 0, f"{command}:\n{result.stdout}{result.stderr}"


def check_github(directory: Path) -> None:
    """zizmor with no finding, and each file valid against its vendored schema."""
    assert_clean("zizmor", "--offline", "--no-progress", directory)
    assert_clean("check-jsonschema", "--builtin-schema", "vendor.github-workflows",
                 *sorted((directory / "workflows").glob("*.yml")))  # fmt: skip
    assert_clean("check-jsonschema", "--builtin-schema", "vendor.dependabot",
                 directory / "dependabot.yml")  # fmt: skip


def test_ci_and_docker_files_pass_their_linters(case: Case) -> None:
    project, answers = case
    if answer(answers, "ci") == "github":
        check_github(project / ".github")
    if answer(answers, "ci") == "gitlab":
        assert_clean("check-jsonschema", "--builtin-schema", "vendor.gitlab-ci",
                     project / ".gitlab-ci.yml")  # fmt: skip
    if answer(answers, "docker"):
        assert_clean("hadolint", "--no-color", "--failure-threshold", "style",
                     project / "Dockerfile")  # fmt: skip


def test_the_repository_ci_passes_the_same_linters() -> None:
    check_github(Path(__file__).resolve().parents[1] / ".github")


def test_ci_and_docker_install_exactly_the_lock(case: Case) -> None:
    project, answers = case
    assert (project / ".python-version").read_text() == f"{answer(answers, 'python_version')}\n"
    if answer(answers, "ci") == "github":
        workflow = yaml.safe_load((project / ".github/workflows/ci.yml").read_text())
        for job in workflow["jobs"].values():
            runs = [step.get("run", "") for step in job["steps"]]
            assert "uv sync --locked" in runs, runs
            assert not any("uv sync" in run and "--locked" not in run for run in runs), runs
            setup_uv = next(s for s in job["steps"] if s.get("uses", "").startswith("astral-sh/"))
            assert setup_uv["with"]["cache-dependency-glob"] == "uv.lock"
    if answer(answers, "ci") == "gitlab":
        pipeline = yaml.safe_load((project / ".gitlab-ci.yml").read_text())
        assert pipeline["default"]["before_script"] == ["uv sync --locked"]
        assert pipeline["default"]["cache"]["key"]["files"] == ["uv.lock"]
    if answer(answers, "docker"):
        instructions = (project / "Dockerfile").read_text().replace("\\\n", " ").splitlines()
        syncs = [line for line in instructions if line.startswith("RUN") and "uv sync" in line]
        assert len(syncs) == 2 and all("uv sync --locked" in run for run in syncs), syncs
        assert "source=uv.lock,target=uv.lock" in syncs[0]
    readme = (project / "README.md").read_text()
    assert "`uv.lock` pins every package, dev tools included: commit it" in readme
    assert (
        "uv lock --upgrade " in readme
        and "uv run pytest" in readme.split("uv lock --upgrade", 1)[1]
    )
    hooks = yaml.safe_load((project / ".pre-commit-config.yaml").read_text())
    # Local hooks only: nothing to download, and the locked tools that CI runs.
    assert [repo["repo"] for repo in hooks["repos"]] == ["local"]
    entries = {hook["id"]: hook["entry"] for hook in hooks["repos"][0]["hooks"]}
    for hook_id in ("ruff", "ruff-format", "mypy"):
        assert entries[hook_id].startswith("uv run --locked "), entries
