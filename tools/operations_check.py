"""Check a served project that runs two uvicorn workers, then scrape it with a real Prometheus.

    python tools/operations_check.py http://127.0.0.1:8000 /usr/bin/prometheus WORKDIR

The nox `operations` session runs it against a fresh render served with WEB_CONCURRENCY=2,
with SUPERUSER_USERNAME and SUPERUSER_PASSWORD naming the superuser that `initial_data`
created, and METRICS_PACKAGE the project's package. Each new connection may land on either
worker, so requests are sent on fresh connections. Any deviation stops it with a message.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NoReturn

# Run as a script, this file's folder is on sys.path: the shared helper is `local_server` here
# (`tools.local_server` from the repository root).
from local_server import free_port, running

ROUNDS = 40
POOL_SIZE = 10  # the generated project's default DATABASE_POOL_SIZE


def fail(message: str) -> NoReturn:
    sys.exit(f"FAILED {message}")


def request(url: str, data: bytes | None = None, headers: dict[str, str] | None = None,
            method: str | None = None) -> tuple[int, bytes]:  # fmt: skip
    """One request on a connection of its own (urllib opens one each time)."""
    call = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(call, timeout=30) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def sign_in(base: str, username: str, password: str) -> str:
    form = urllib.parse.urlencode({"username": username, "password": password}).encode()
    status, body = request(f"{base}/api/v1/auth/token", data=form)
    if status != 200:
        fail(f"sign-in answered {status}: {body[:300]!r}")
    return str(json.loads(body)["access_token"])


def scrape(base: str) -> dict[str, float]:
    """The /metrics samples, each name{labels} summed with its twins (what PromQL's sum does)."""
    status, body = request(f"{base}/metrics")
    if status != 200:
        fail(f"/metrics answered {status}")
    samples: dict[str, float] = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = samples.get(name, 0.0) + float(value)
    return samples


def me_count(samples: dict[str, float]) -> float:
    wanted = 'http_requests_total{method="GET",route="/api/v1/users/me",status="200"}'
    return sum(value for name, value in samples.items() if name == wanted)


def check_workers(base: str, package: str) -> None:
    username, password = os.environ["SUPERUSER_USERNAME"], os.environ["SUPERUSER_PASSWORD"]
    # Password hashing on each worker's own pool: concurrent sign-ins all succeed.
    with ThreadPoolExecutor(4) as pool:
        tokens = list(pool.map(lambda _: sign_in(base, username, password), range(4)))
    token = tokens[0]
    me = f"{base}/api/v1/users/me"
    auth = {"Authorization": f"Bearer {token}"}
    before = me_count(scrape(base))
    for _ in range(ROUNDS):
        status, body = request(me, headers=auth)
        if status != 200:
            fail(f"a token from one worker was refused on a fresh connection: {status} {body!r}")
    print(f"ok: one token, {ROUNDS} requests on fresh connections: all 200")

    # Each worker writes its own files; a counter file per worker that counted requests.
    directory = max(
        Path(tempfile.gettempdir()).glob(f"{package}-metrics-*"), key=lambda p: p.stat().st_mtime
    )
    counting = {path.stem.rsplit("_", 1)[1] for path in directory.glob("counter_*.db")}
    if len(counting) < 2:
        fail(f"only {len(counting)} worker(s) counted requests in {directory}")
    print(f"ok: {len(counting)} workers counted requests ({directory})")

    # Whichever worker answers a scrape, it reports every worker's counts and pools (each
    # worker writes its pool figures down every second).
    deadline = time.monotonic() + 10
    while scrape(base).get("db_pool_size", 0) != 2 * POOL_SIZE:
        if time.monotonic() > deadline:
            fail(f"db_pool_size is not {2 * POOL_SIZE}: two workers with {POOL_SIZE} each")
        time.sleep(0.5)
    for _ in range(8):
        samples = scrape(base)
        if (counted := me_count(samples) - before) != ROUNDS:
            fail(f"/metrics counted {counted} of the {ROUNDS} GET /users/me sent")
        if (pool_size := samples.get("db_pool_size", 0)) != 2 * POOL_SIZE:
            fail(f"db_pool_size is {pool_size}: two workers with {POOL_SIZE} each")
    print(f"ok: every scrape sums both workers ({ROUNDS} requests, pool size {2 * POOL_SIZE})")

    # A session ended on one worker is ended on all (when the service has sessions).
    status, _ = request(f"{base}/api/v1/auth/logout", data=b"", headers=auth, method="POST")
    if status in (404, 405):
        print("note: no POST /auth/logout in this project; session checks skipped")
        return
    if status != 204:
        fail(f"logout answered {status}")
    for _ in range(ROUNDS // 2):
        status, _ = request(me, headers=auth)
        if status != 401:
            fail(f"a token of an ended session still worked on some worker: {status}")
    print(f"ok: after logout the token is refused on {ROUNDS // 2} fresh connections")


def query(prometheus: str, promql: str) -> float | None:
    url = f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    status, body = request(url)
    if status != 200:
        fail(f"Prometheus answered {status} to {promql}: {body[:300]!r}")
    result = json.loads(body)["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def wait_for(prometheus: str, promql: str, wanted: float, seconds: float = 30) -> float:
    deadline = time.monotonic() + seconds
    value = None
    while time.monotonic() < deadline:
        value = query(prometheus, promql)
        if value is not None and value >= wanted:
            return value
        time.sleep(0.5)
    fail(f"Prometheus: {promql} is {value} after {seconds:.0f} s, expected at least {wanted}")
    raise AssertionError  # unreachable


def check_prometheus(base: str, binary: str, workdir: Path) -> None:
    target = urllib.parse.urlsplit(base).netloc
    config = workdir / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n  - job_name: service\n"
        f"    static_configs:\n      - targets: ['{target}']\n"
    )
    port = free_port()
    log = workdir / "prometheus.log"
    prometheus = f"http://127.0.0.1:{port}"

    def failed_to_start(why: str) -> NoReturn:
        fail(f"Prometheus did not start ({why}): {log.read_text()}")

    with running(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        log=log, fail=failed_to_start, seconds=60, interval=0.5,
        ready=lambda: request_status(f"{prometheus}/-/ready") == 200,
    ):  # fmt: skip
        wait_for(prometheus, 'up{job="service"}', 1)
        print(f"ok: Prometheus {binary} scrapes {target}: up")
        live = 'sum(http_requests_total{route="/api/v1/health/live",status="200"})'
        before = query(prometheus, live) or 0.0
        for _ in range(ROUNDS):
            if request(f"{base}/api/v1/health/live")[0] != 200:
                fail("/health/live did not answer 200")
        after = wait_for(prometheus, live, before + ROUNDS)
        print(f"ok: Prometheus saw the request counter move from {before:.0f} to {after:.0f}")
        pool = wait_for(prometheus, "sum(db_pool_size)", 2 * POOL_SIZE)
        print(f"ok: Prometheus sees both workers' pools ({pool:.0f} connections)")
        alerts = readme_promql(Path("README.md"))
        for promql in alerts:
            query(prometheus, promql)
        print(f"ok: Prometheus accepts the {len(alerts)} PromQL lines of the project's README")


def readme_promql(readme: Path) -> list[str]:
    """The expressions in the README's promql blocks (comments aside)."""
    blocks = re.findall(r"```promql\n(.*?)```", readme.read_text(), re.DOTALL)
    lines = [line for block in blocks for line in block.splitlines()]
    expressions = [line for line in lines if line.strip() and not line.startswith("#")]
    if not expressions:
        fail(f"{readme} has no PromQL")
    return expressions


def request_status(url: str) -> int:
    try:
        return request(url)[0]
    except OSError:
        return 0


def main() -> None:
    base, binary, workdir = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    check_workers(base, os.environ["METRICS_PACKAGE"])
    check_prometheus(base, binary, workdir)


if __name__ == "__main__":
    main()
