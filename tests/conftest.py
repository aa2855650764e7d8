from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import copier
import pytest

TEMPLATE = Path(__file__).resolve().parents[1]

Render = Callable[..., Path]


@pytest.fixture
def render(tmp_path: Path) -> Render:
    """Render the template's working tree with these answers (the rest defaulted)."""
    counter = iter(range(1000))

    def run(**answers: Any) -> Path:
        return render_into(tmp_path / f"project{next(counter)}", **answers)

    return run


def render_into(destination: Path, **answers: Any) -> Path:
    copier.run_copy(
        str(TEMPLATE),
        destination,
        data={"project_name": "Acme Orders", **answers},
        defaults=True,
        vcs_ref="HEAD",
        quiet=True,
        unsafe=False,
    )
    return destination
