"""Experiments remember when their end-of-experiment step ran (``finalized_at``).

Revision ID: 0004
Revises: 0003
Create Date: 2025-01-04

The end-of-experiment step logs the comparison on the MLflow parent run and ends that run. The
job does it after its last trial. If the job dies in between, or never existed because every
trial was cached, the reconciler does it instead, and needs to know which experiments are
still waiting for it. Rows that exist before this revision are NULL, so the reconciler
finalizes them once. That step is idempotent: nothing is logged twice.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("experiments") as batch:
        batch.add_column(sa.Column("finalized_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("experiments") as batch:
        batch.drop_column("finalized_at")
