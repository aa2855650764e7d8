"""`copier update` keeps a team's own edits and brings the template's changes."""

from __future__ import annotations

import filecmp
import shutil
import subprocess
from pathlib import Path

import copier
import pytest
import yaml

from .conftest import TEMPLATE

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
        if path.is_file() and ".git" not in path.parts:
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
    assert not (project / "tests" / "test_items.py").exists()
    assert "items" not in (project / "src" / "acme_orders" / "api.py").read_text()
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert answers["include_items"] is False
    assert answers["_commit"] == "v2"


def relative_files(root: Path) -> set[Path]:
    return {
        path.relative_to(root)
        for path in root.rglob("*")
        if path.is_file() and ".git" not in path.relative_to(root).parts
    }
