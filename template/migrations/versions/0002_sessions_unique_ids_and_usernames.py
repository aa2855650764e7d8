"""sessions, ids never reused, usernames unique ignoring case

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 00:00:00

- user_sessions: one row per sign-in (see auth/sessions.py).
- SQLite: users rebuilt with AUTOINCREMENT, so that the id of a deleted row is never
  handed out again (PostgreSQL's sequences never reuse one).
- Usernames unique ignoring case: refused, naming them, while two differ only in case.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import context, op
from alembic.util import CommandError

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def users_table(*, autoincrement: bool) -> sa.Table:
    """The users table as revision 0001 made it, for SQLite's rebuild."""
    return sa.Table(
        "users",
        sa.MetaData(),
        sa.Column("username", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("email", sqlmodel.sql.sqltypes.AutoString(length=254), nullable=False),
        sa.Column("full_name", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("hashed_password", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("is_superuser", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("email = lower(email)", name="ck_users_email_lower_case"),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.Index("ix_users_email", "email", unique=True),
        sa.Index("ix_users_username", "username", unique=True),
        sqlite_autoincrement=autoincrement,
    )


def rebuild_on_sqlite(*, autoincrement: bool) -> None:
    if op.get_context().dialect.name != "sqlite":
        return
    # Batch mode copies the rows into a new table made from this definition, whose
    # AUTOINCREMENT counter then starts above the highest id copied. (The tables of optional
    # features get theirs in their own branches.)
    table = users_table(autoincrement=autoincrement)
    with op.batch_alter_table(table.name, copy_from=table, recreate="always"):
        pass


def refuse_usernames_that_clash() -> None:
    """Stop, changing nothing, while two usernames differ only in case."""
    if context.is_offline_mode():
        return
    rows = op.get_bind().execute(
        sa.text(
            "SELECT username FROM users WHERE lower(username) IN "
            "(SELECT lower(username) FROM users GROUP BY lower(username) HAVING count(*) > 1) "
            "ORDER BY lower(username), username"
        )
    )
    groups: dict[str, list[str]] = {}
    for (username,) in rows:
        groups.setdefault(username.lower(), []).append(username)
    if not groups:
        return
    clashes = "; ".join(", ".join(repr(name) for name in names) for names in groups.values())
    msg = (
        "Usernames are now unique ignoring case, and these accounts clash: "
        f"{clashes}. Rename all but one of each, then run `alembic upgrade head` again. "
        "Nothing was changed."
    )
    raise CommandError(msg)


def upgrade() -> None:
    refuse_usernames_that_clash()
    rebuild_on_sqlite(autoincrement=True)
    op.drop_index("ix_users_username", table_name="users")
    op.create_index("ix_users_username_lower", "users", [sa.text("lower(username)")], unique=True)
    op.create_table(
        "user_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("user_agent", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
        sa.Column(
            "refresh_token_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False
        ),
        sa.Column("refresh_expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_user_sessions_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_sessions")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_user_sessions_user_id"), "user_sessions", ["user_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_user_sessions_user_id"), table_name="user_sessions")
    op.drop_table("user_sessions")
    op.drop_index("ix_users_username_lower", table_name="users")
    op.create_index("ix_users_username", "users", ["username"], unique=True)
    rebuild_on_sqlite(autoincrement=False)
