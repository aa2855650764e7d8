"""Where this worker's Prometheus figures go when several workers serve: a directory they share.

Imported by core/metrics.py before prometheus-client, which reads PROMETHEUS_MULTIPROC_DIR once,
when it is first imported. Touch this file only to change where that directory is.
"""

import multiprocessing
import os
import shutil
import tempfile
from pathlib import Path


def _share_between_workers() -> bool:
    """Point prometheus-client at a directory shared by this worker's siblings, if any.

    uvicorn's workers are child processes of one supervisor: a directory named after it (its
    pid and start time) is theirs, and those of supervisors gone are removed. It must be set
    before prometheus-client is imported. Where workers are forked another way (gunicorn), set
    PROMETHEUS_MULTIPROC_DIR to an empty directory instead.
    """
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return True
    if multiprocessing.parent_process() is None:
        return False
    base = Path(tempfile.gettempdir())
    prefix = __name__.split(".")[0] + "-metrics-"
    for old in base.glob(prefix + "*"):
        pid, _, stamp = old.name.removeprefix(prefix).partition("-")
        if pid.isdigit() and process_started(int(pid)) != stamp:
            shutil.rmtree(old, ignore_errors=True)
    supervisor = os.getppid()
    directory = base / f"{prefix}{supervisor}-{process_started(supervisor)}"
    directory.mkdir(exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    return True


def process_started(pid: int) -> str | None:
    """When process `pid` started (clock ticks after boot), or None if it is not running."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return "0"  # running, where /proc is not there to say since when


MULTIPROCESS = _share_between_workers()
