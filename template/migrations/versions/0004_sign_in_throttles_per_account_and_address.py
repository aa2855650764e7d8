"""sign-in throttles per account and address

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 00:00:00

The table stays; what its rows mean changes. Rows counted under the previous rules (an
account's failures from every address, an address refused outright) would lock owners out
under the new ones, and the new rows (pairs of account and address) would mean nothing to
the previous code: both ways the rows go. They are short-lived counts (a day at most), so
nothing of value is lost; at worst an attacker's count starts again from nothing.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(sa.text("DELETE FROM sign_in_throttles"))


def downgrade() -> None:
    op.execute(sa.text("DELETE FROM sign_in_throttles"))
