"""Seed a migrated database for `nox -s bench`: users, and items for the first of them.

    python bench/seed.py DATABASE_URL USERS ITEMS PASSWORD

Prints the id of the user who owns the items. Writes through asyncpg directly, with one
password hash shared by every user, so that seeding takes seconds.
"""

import asyncio
import sys
from datetime import UTC, datetime

import asyncpg
from passlib.context import CryptContext


async def seed(url: str, users: int, items: int, password: str) -> int:
    hashed = CryptContext(schemes=["argon2"]).hash(password)
    now = datetime.now(UTC)
    connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await connection.executemany(
            "INSERT INTO users (username, email, full_name, hashed_password, is_active,"
            " is_superuser, created_at) VALUES ($1, $2, $3, $4, true, false, $5)",
            [(f"bench{n}", f"bench{n}@example.com", f"Bench {n}", hashed, now)
             for n in range(users)],
        )  # fmt: skip
        owner = await connection.fetchval("SELECT id FROM users WHERE username = 'bench0'")
        await connection.executemany(
            "INSERT INTO items (title, description, owner_id, created_at, updated_at)"
            " VALUES ($1, $2, $3, $4, $4)",
            [(f"Item {n}", "A seeded item", owner, now) for n in range(items)],
        )
        return int(owner)
    finally:
        await connection.close()


if __name__ == "__main__":
    url, users, items, password = sys.argv[1:5]
    print(asyncio.run(seed(url, int(users), int(items), password)))
