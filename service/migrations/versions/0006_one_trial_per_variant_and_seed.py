"""At most one trial per variant and seed.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29

Adaptive seeds add trials to a running experiment, from the experiment's job and, after a lost
job, from its successor. A unique index on (variant_id, seed) makes "never run a seed twice" a
property of the store rather than of the callers' care: of two inserts of the same seed one
fails, and the loser reads the winner's row. Every experiment so far has distinct seeds per
variant (the spec refuses repeats), so existing rows satisfy it.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ux_trials_variant_seed"


def upgrade() -> None:
    op.create_index(INDEX, "trials", ["variant_id", "seed"], unique=True)


def downgrade() -> None:
    op.drop_index(INDEX, table_name="trials")
