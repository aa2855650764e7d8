"""What a render holds: a complete project, no template syntax, no secrets in the answers."""

from __future__ import annotations

import py_compile
import re
import tomllib
from pathlib import Path

import pytest
import yaml

from .conftest import Render

TEMPLATE_SYNTAX = re.compile(r"\{\{ *[a-z_]+ *(\||\}\})|\{%-? *(if|for|endif|set|else) ")


def files_of(project: Path) -> list[Path]:
    return [p for p in project.rglob("*") if p.is_file() and ".git" not in p.parts]


def env_values(project: Path) -> dict[str, str]:
    values = {}
    for line in (project / ".env").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name] = value
    return values


def test_default_render_has_the_contract_layout(render: Render) -> None:
    project = render()
    package = project / "src" / "acme_orders"
    for path in [
        "pyproject.toml", "README.md", ".env", ".env.example", ".gitignore",
        "alembic.ini", ".copier-answers.yml", "migrations/env.py", "migrations/script.py.mako",
        "tests/conftest.py", "tests/users/test_routes.py", "tests/items/test_routes.py",
        "tests/system/test_migrations.py",
    ]:  # fmt: skip
        assert (project / path).is_file(), path
    for module in ["main", "api", "initial_data", "core/config", "core/db", "core/engines",
                   "core/passwords", "core/hashing", "core/tokens", "auth/routes",
                   "auth/dependencies", "users/models", "users/service", "users/routes",
                   "items/models", "items/service", "items/routes", "health/routes"]:  # fmt: skip
        assert (package / f"{module}.py").is_file(), module
    assert list((project / "migrations" / "versions").glob("*.py"))


@pytest.mark.parametrize(
    "answers",
    [{}, {"include_items": False}, {"database": "sqlite"}, {"python_version": "3.11"}],
    ids=["defaults", "no-items", "sqlite", "py311"],
)
def test_render_holds_no_template_syntax_and_compiles(render: Render, answers: dict) -> None:
    project = render(**answers)
    for path in files_of(project):
        if path.suffix == ".mako" or path.parent.name == "templates":
            continue  # Alembic's and the mails' own templates
        text = path.read_text()
        assert not TEMPLATE_SYNTAX.search(text), path
        assert not path.name.endswith(".jinja"), path
        assert "{" not in path.name, path
        if path.suffix == ".py":
            py_compile.compile(str(path), doraise=True)
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    assert pyproject["project"]["name"] == "acme-orders"


def test_without_items_nothing_refers_to_them(render: Render) -> None:
    project = render(include_items=False)
    assert not (project / "src" / "acme_orders" / "items").exists()
    assert not (project / "tests" / "items").exists()
    mention = re.compile(r"\bitems?\b(?!\()", re.IGNORECASE)  # but dict.items()
    for path in files_of(project):
        if path.suffix in {".py", ".mako", ".md", ".ini", ".toml"}:
            # Except migrations/env.py's list of features, which names what a switched-off
            # feature leaves in the database (its tables stay, with their data).
            lines = path.read_text().splitlines()
            text = "\n".join(line for line in lines if not line.startswith('    Feature("items"'))
            assert not mention.search(text), path


def test_without_email_nothing_of_it_is_rendered(render: Render) -> None:
    project = render(email=False)
    assert not (project / "src" / "acme_orders" / "email").exists()
    assert not (project / "tests" / "email").exists()
    assert not list((project / "migrations" / "versions").glob("email_*"))
    mention = re.compile(r"smtp|outbox|email_verified|aiosmtp|jinja2|mailpit", re.IGNORECASE)
    for path in files_of(project):
        # env.py names the tables of every feature, so that switched-off ones are left alone.
        if path.name != "env.py":
            assert not mention.search(path.read_text()), path


def test_with_email_its_package_templates_and_migration_branch_are_rendered(
    render: Render,
) -> None:
    project = render()
    package = project / "src" / "acme_orders" / "email"
    for module in ("config", "limits", "mails", "models", "outbox", "routes", "service", "tokens"):
        assert (package / f"{module}.py").is_file(), module
    for mail in ("verify_email", "password_recovery", "password_changed", "email_changed"):
        assert "{{ project_name }}" in (package / "templates" / f"{mail}.txt").read_text()
        assert (package / "templates" / f"{mail}.html").is_file()
    [revision] = (project / "migrations" / "versions").glob("email_*.py")
    text = revision.read_text()
    assert 'branch_labels: str | Sequence[str] | None = ("email",)' in text
    assert 'depends_on: str | Sequence[str] | None = "0002"' in text
    dependencies = tomllib.loads((project / "pyproject.toml").read_text())["project"]
    assert any(d.startswith("aiosmtplib") for d in dependencies["dependencies"])
    assert "SMTP_HOST" in (project / ".env.example").read_text()


def test_database_answer_picks_the_runtime_driver(render: Render) -> None:
    for database, driver, other in [("postgresql", "asyncpg", "aiosqlite"),
                                    ("sqlite", "aiosqlite", "asyncpg")]:  # fmt: skip
        project = render(database=database)
        pyproject = tomllib.loads((project / "pyproject.toml").read_text())
        runtime = " ".join(pyproject["project"]["dependencies"])
        dev = " ".join(pyproject["dependency-groups"]["dev"])
        assert driver in runtime and other not in runtime
        assert other in dev
        example = (project / ".env.example").read_text()
        expected_url = "postgresql+asyncpg://" if database == "postgresql" else "sqlite+aiosqlite"
        assert f"DATABASE_URL={expected_url}" in example


def test_python_version_sets_the_tools(render: Render) -> None:
    project = render(python_version="3.13")
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    assert pyproject["project"]["requires-python"] == ">=3.13"
    assert pyproject["tool"]["ruff"]["target-version"] == "py313"
    assert pyproject["tool"]["mypy"]["python_version"] == "3.13"


def test_secrets_are_random_and_stay_out_of_the_answers_file(render: Render) -> None:
    first, second = render(), render()
    key = env_values(first)["SECRET_KEY"]
    password = env_values(first)["FIRST_SUPERUSER_PASSWORD"]
    assert len(key) >= 32 and len(password) >= 16
    assert key != env_values(second)["SECRET_KEY"]
    assert password != env_values(second)["FIRST_SUPERUSER_PASSWORD"]
    answers_text = (first / ".copier-answers.yml").read_text()
    assert key not in answers_text and password not in answers_text
    answers = yaml.safe_load(answers_text)
    assert answers["_src_path"]
    assert not any("secret" in name.lower() or "password" in name.lower() for name in answers)
    assert ".env\n" in (first / ".gitignore").read_text()


def test_answers_with_quotes_render_valid_files(render: Render) -> None:
    project = render(
        project_name='Bob\'s "Quoted" Shop', description='Say "hi" \\ bye', author_name='A "B" C'
    )
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    assert pyproject["project"]["description"] == 'Say "hi" \\ bye'
    assert pyproject["project"]["authors"][0]["name"] == 'A "B" C'
    assert env_values(project)["PROJECT_NAME"] == '"Bob\'s \\"Quoted\\" Shop"'
