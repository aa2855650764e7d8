"""Mutation testing of the security-critical modules: do the tests fail when the code is wrong?

Run it with `uv run --group mutation python -m tests.mutants` (README: "Mutation testing").
Cosmic Ray makes small changes (mutants) to each module listed under `[tool.mutants.modules]`
in pyproject.toml: `<` for `<=`, `True` for `False`, 254 for 253, … For each one, the tests
that exercise the module run; a mutant is killed when they fail, and survives when they pass.
The score is the share killed. A survivor is either equivalent (it changes nothing a user
could notice: list it in tests/equivalent_mutants.toml, saying why) or a missing test.

The work happens in a copy of the project, so an interrupted run never leaves a mutated file
in yours. Settings (environment):

    MUTANTS_SAMPLE   mutants per module, spread evenly through it (30; 0 for all of them)
    MUTANTS_MODULES  only these modules, comma-separated (e.g. auth/throttle.py)
    MUTANTS_ALL_TESTS=1  run the whole suite for every mutant, not the module's tests
    TEST_DATABASE_URL    as for pytest: run on PostgreSQL

It prints a measurement and exits 0 whatever the score; it fails only when the tests fail
before any mutation.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EQUIVALENTS = Path(__file__).resolve().parent / "equivalent_mutants.toml"
COPY_IGNORE = shutil.ignore_patterns(
    ".venv", ".git", "__pycache__", "*.db", ".mypy_cache", ".ruff_cache", ".pytest_cache"
)


@dataclass
class Outcome:
    line: int
    description: str  # "`before` -> `after`": stable while the line's text stays
    killed: bool
    equivalent: str | None  # why, when listed as equivalent


def settings() -> tuple[str, dict[str, list[str]]]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    package = pyproject["tool"]["uv"]["build-backend"]["module-name"]
    modules: dict[str, list[str]] = pyproject["tool"]["mutants"]["modules"]
    return package, modules


def known_equivalents(kind: str) -> dict[tuple[str, str], str]:
    """The listed equivalents; an entry with `databases` holds only on those (kind: sqlite...)."""
    if not EQUIVALENTS.exists():
        return {}
    entries = tomllib.loads(EQUIVALENTS.read_text()).get("equivalent", [])
    return {
        (entry["module"], entry["mutant"]): entry["why"]
        for entry in entries
        if kind in entry.get("databases", [kind])
    }


def evenly(values: list[Any], size: int) -> list[Any]:
    """`size` values spread evenly from first to last (all for 0 or more than there are)."""
    if size <= 0 or size >= len(values):
        return values
    if size == 1:
        return [values[len(values) // 2]]
    return [values[round(i * (len(values) - 1) / (size - 1))] for i in range(size)]


def describe(diff: str) -> str:
    lines = diff.splitlines()
    removed = [line[1:].strip() for line in lines if line[:1] == "-" and line[:3] != "---"]
    added = [line[1:].strip() for line in lines if line[:1] == "+" and line[:3] != "+++"]
    return f"`{' / '.join(removed)}` -> `{' / '.join(added)}`"


def pytest_command(tests: list[str]) -> list[str]:
    # -x: the first failing test is enough to kill a mutant.
    return [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]


def mutate_module(
    module: str, tests: list[str], sample: int, equivalents: dict[tuple[str, str], str]
) -> list[Outcome]:
    # Imported here: the mutation group is installed only for this command.
    from cosmic_ray.commands import init
    from cosmic_ray.mutating import mutate_and_test
    from cosmic_ray.work_db import WorkDB, use_db

    package, _ = settings()
    path = Path("src") / package / module
    missing = [test for test in tests if not Path(test).exists()]
    if missing:
        print(f"{module}: no such tests, left out: {', '.join(missing)}", flush=True)
    command = pytest_command([test for test in tests if test not in missing])
    started = time.perf_counter()
    clean = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    if clean.returncode != 0:
        sys.exit(f"The tests fail before any mutation; fix them first:\n{clean.stdout[-3000:]}")
    # A mutant that hangs (an endless loop) counts as killed once it takes far longer.
    timeout = max(60.0, 5 * (time.perf_counter() - started))
    with use_db(f"{module.replace('/', '_')}.sqlite", WorkDB.Mode.create) as work_db:
        init([path], work_db, {})
        mutants = sorted(
            work_db.work_items,
            key=lambda mutant: (mutant.mutations[0].start_pos, mutant.mutations[0].operator_name,
                              mutant.mutations[0].occurrence),
        )  # fmt: skip
    count = len(mutants)
    print(f"{module}: {min(sample or count, count)} of {count} mutants", flush=True)
    outcomes = []
    for mutant in evenly(mutants, sample):
        result = mutate_and_test(mutant.mutations, " ".join(command), timeout)
        if result.diff is None:  # the mutation could not be applied
            continue
        description = describe(result.diff)
        outcomes.append(
            Outcome(
                line=mutant.mutations[0].start_pos[0],
                description=description,
                killed=result.is_killed,
                equivalent=equivalents.get((module, description)),
            )
        )
    return outcomes


def report(module: str, outcomes: list[Outcome]) -> None:
    killed = sum(outcome.killed for outcome in outcomes)
    equivalent = sum(not outcome.killed and outcome.equivalent is not None for outcome in outcomes)
    total = len(outcomes)
    counted = total - equivalent
    raw = 100 * killed / total if total else 0.0
    net = 100 * killed / counted if counted else 100.0
    print(
        f"{module}: {killed}/{total} killed ({raw:.0f} % raw), {equivalent} equivalent, "
        f"{net:.0f} % of the non-equivalent",
        flush=True,
    )
    for outcome in outcomes:
        if not outcome.killed:
            mark = f"EQUIVALENT ({outcome.equivalent})" if outcome.equivalent else "SURVIVED"
            print(f"    {mark} {module}:{outcome.line} {outcome.description}", flush=True)


def main() -> None:
    _, modules = settings()
    sample = int(os.environ.get("MUTANTS_SAMPLE", "30"))
    chosen = [name for name in os.environ.get("MUTANTS_MODULES", "").split(",") if name]
    every_test = os.environ.get("MUTANTS_ALL_TESTS") == "1"
    url = os.environ.get("TEST_DATABASE_URL") or "sqlite"
    equivalents = known_equivalents(url.split(":")[0].split("+")[0])
    database = url.split("@")[-1]
    print(f"Mutation testing on {database}, {sample or 'all'} mutants per module", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="mutants-"))
    copy = workdir / "project"
    shutil.copytree(ROOT, copy, ignore=COPY_IGNORE)
    package, _ = settings()
    # The copy's sources come first, before the ones the project's environment installed.
    inherited = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(copy / "src"), *([inherited] if inherited else [])]
    )
    os.chdir(copy)
    summary: list[tuple[str, list[Outcome]]] = []
    try:
        for module, tests in modules.items():
            if chosen and module not in chosen:
                continue
            if not (copy / "src" / package / module).exists():
                print(f"{module}: no such module, skipped", flush=True)
                continue
            outcomes = mutate_module(module, ["tests"] if every_test else tests, sample,
                                     equivalents)  # fmt: skip
            report(module, outcomes)
            summary.append((module, outcomes))
    finally:
        os.chdir(ROOT)
        shutil.rmtree(workdir, ignore_errors=True)
    killed = sum(o.killed for _, outcomes in summary for o in outcomes)
    total = sum(len(outcomes) for _, outcomes in summary)
    print(f"All: {killed}/{total} killed" + (f" ({100 * killed / total:.0f} %)" if total else ""))


if __name__ == "__main__":
    main()
