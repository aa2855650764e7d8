"""Create, drop or probe a PostgreSQL database for the nox sessions.

    python tools/pg_admin.py probe|create|drop SERVER_URL [NAME]

SERVER_URL is postgresql+asyncpg://user@host:port (no database). `probe` prints "ok" or
"unavailable: <reason>" and always exits 0, so the session decides what a missing server
means.
"""

from __future__ import annotations

import asyncio
import sys

import asyncpg


async def run(server_url: str, sql: str) -> None:
    dsn = server_url.replace("postgresql+asyncpg://", "postgresql://") + "/postgres"
    connection = await asyncpg.connect(dsn, timeout=5)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


def main(action: str, server_url: str, name: str = "") -> None:
    if action == "probe":
        try:
            asyncio.run(run(server_url, "SELECT 1"))
        except Exception as error:
            print(f"unavailable: {error!r}")
        else:
            print("ok")
    elif action == "create":
        asyncio.run(run(server_url, f'CREATE DATABASE "{name}"'))
    elif action == "drop":
        asyncio.run(run(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    else:
        sys.exit(f"unknown action {action!r}")


if __name__ == "__main__":
    main(*sys.argv[1:])
