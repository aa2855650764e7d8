"""Every answer that can be wrong is refused with a message naming its question."""

from __future__ import annotations

from pathlib import Path

import copier
import pytest
import yaml

from .conftest import TEMPLATE, Render

QUESTIONS = yaml.safe_load((TEMPLATE / "copier.yml").read_text())
CONTRACT_QUESTIONS = {
    "project_name", "project_slug", "package_name", "description", "author_name",
    "author_email", "python_version", "database", "include_items", "ci", "docker",
    "kubernetes", "email",
}  # fmt: skip


def test_the_contract_questions_are_asked_with_help() -> None:
    asked = {name for name in QUESTIONS if not name.startswith("_")}
    assert asked == CONTRACT_QUESTIONS
    for name in asked:
        assert QUESTIONS[name].get("help"), f"{name} has no help"


def test_template_needs_no_trust() -> None:
    assert "_tasks" not in QUESTIONS
    assert "_jinja_extensions" not in QUESTIONS
    assert "_migrations" not in QUESTIONS
    assert QUESTIONS["_subdirectory"] == "template"
    assert QUESTIONS["_envops"]["undefined"] == "jinja2.StrictUndefined"


def test_every_question_has_a_default(tmp_path: Path) -> None:
    copier.run_copy(str(TEMPLATE), tmp_path / "out", defaults=True, vcs_ref="HEAD", quiet=True)
    answers = yaml.safe_load((tmp_path / "out" / ".copier-answers.yml").read_text())
    assert (answers["project_name"], answers["package_name"]) == ("My Service", "my_service")


def test_defaults_chain_from_the_project_name(render: Render) -> None:
    project = render(project_name="Acme  Orders & Co.")
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert answers["project_slug"] == "acme-orders-co"
    assert answers["package_name"] == "acme_orders_co"
    assert (project / "src" / "acme_orders_co" / "main.py").is_file()


BAD_ANSWERS = [
    ("project_name", "   "),
    ("project_slug", "Acme_Orders"),
    ("project_slug", "acme--orders"),
    ("project_slug", "-acme"),
    ("project_slug", "9lives"),
    ("package_name", "Acme"),
    ("package_name", "acme-orders"),
    ("package_name", "1acme"),
    ("package_name", "class"),
    ("package_name", "import"),
    ("package_name", "sqlmodel"),
    ("author_email", "not-an-email"),
    ("author_email", "a@b"),
    ("python_version", "3.10"),
    ("database", "mysql"),
    ("ci", "jenkins"),
]


@pytest.mark.parametrize(("question", "answer"), BAD_ANSWERS, ids=lambda v: str(v))
def test_bad_answer_is_refused_naming_the_question(
    tmp_path: Path, question: str, answer: str
) -> None:
    destination = tmp_path / "out"
    with pytest.raises(ValueError, match=question) as error:
        copier.run_copy(
            str(TEMPLATE),
            destination,
            data={"project_name": "Acme Orders", question: answer},
            defaults=True,
            vcs_ref="HEAD",
            quiet=True,
        )
    assert "Traceback" not in str(error.value)
    # Nothing half-written is left behind.
    assert not destination.exists() or not any(destination.iterdir())


@pytest.mark.parametrize(
    ("question", "answer"),
    [
        ("project_slug", "a"),
        ("project_slug", "acme-orders-2"),
        ("package_name", "acme"),
        ("package_name", "_private"),
        ("author_email", "first.last+tag@sub.example.org"),
    ],
)
def test_good_answers_are_accepted(render: Render, question: str, answer: str) -> None:
    project = render(**{question: answer})
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert answers[question] == answer


def test_kubernetes_is_asked_only_with_docker(render: Render, tmp_path: Path) -> None:
    # Not asked (so not recorded) without docker; given anyway, it is refused by name.
    answers = yaml.safe_load((render(docker=False) / ".copier-answers.yml").read_text())
    assert "kubernetes" not in answers
    assert yaml.safe_load((render() / ".copier-answers.yml").read_text())["kubernetes"] is False
    with pytest.raises(ValueError, match="kubernetes needs docker"):
        copier.run_copy(
            str(TEMPLATE), tmp_path / "out", data={"docker": False, "kubernetes": True},
            defaults=True, vcs_ref="HEAD", quiet=True, unsafe=False,
        )  # fmt: skip


def default_slug(tmp_path: Path, project_name: str) -> str:
    """The project_slug that the defaults give this name, validated, without writing files."""
    worker = copier.run_copy(
        str(TEMPLATE), tmp_path / "out", data={"project_name": project_name},
        defaults=True, pretend=True, vcs_ref="HEAD", quiet=True, unsafe=False,
    )  # fmt: skip
    return str(worker.answers.combined["project_slug"])


@pytest.mark.parametrize(
    ("project_name", "slug"),
    [
        ("Café Orders", "cafe-orders"),
        ("Crème Brûlée Über Straße", "creme-brulee-uber-strasse"),
        ("Œuvre Ærø Łódź Şiş Ñandú", "oeuvre-aero-lodz-sis-nandu"),
        ("Cafe\u0301s", "cafes"),  # the accent as a combining mark (NFD)
        ("123 Orders", "orders"),
        ("2 Fast 2 Furious", "fast-2-furious"),
        ("--Acme__Orders--", "acme-orders"),
        ("Заказы", "service"),  # no Latin letter at all
        ("404", "service"),
    ],
)
def test_default_slug_is_valid_for_any_name(tmp_path: Path, project_name: str, slug: str) -> None:
    # Reaching the answer at all means the slug validator accepted the default.
    assert default_slug(tmp_path, project_name) == slug


def test_post_copy_message_gives_an_account_to_try(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    copier.run_copy(
        str(TEMPLATE), tmp_path / "out", data={"project_name": "Acme Orders"},
        defaults=True, vcs_ref="HEAD", unsafe=False,
    )  # fmt: skip
    message = capfd.readouterr().err
    steps = [line.strip() for line in message.splitlines() if line.startswith("  ")]
    assert steps[-3:] == [
        "uv run alembic upgrade head",
        "uv run python -m acme_orders.initial_data",
        "uv run fastapi dev",
    ]
    assert "FIRST_SUPERUSER_PASSWORD" in message


def test_the_repository_ci_runs_readme_test_command() -> None:
    workflow = yaml.safe_load((TEMPLATE / ".github" / "workflows" / "ci.yml").read_text())
    steps = workflow["jobs"]["nox"]["steps"]
    readme = (TEMPLATE / "README.md").read_text()
    command = readme.split("<!-- test command -->", 1)[1].split("```")[1].split("\n", 1)[1].strip()
    assert command in [step.get("run") for step in steps]
    # .ci/run runs the command it finds under the same marker.
    assert "<!-- test command -->" in (TEMPLATE / ".ci" / "run").read_text()
