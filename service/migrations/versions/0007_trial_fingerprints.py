"""Trials record fingerprints of what their seed controlled.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30

/compare pairs two arms' trials of a seed only where their data order, initial weights and
random streams agree (trainer.fingerprints). Trials stored before have none (NULL): their
pairing is reported as unverified, not refused.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("trials") as batch:
        batch.add_column(sa.Column("fingerprints", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("trials") as batch:
        batch.drop_column("fingerprints")
