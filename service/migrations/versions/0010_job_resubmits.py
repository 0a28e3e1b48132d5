"""Experiments count the reconciler's resubmissions of a lost job apart from all submissions.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07

``max_job_resubmits`` was checked against every submission, so each ``POST .../evaluate`` (and
each adaptive look) used up one of the resubmissions a lost job may have. Experiments stored
before get 0: a lost job's resubmissions were not told apart from the rest until now.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("experiments") as batch:
        batch.add_column(sa.Column("job_resubmits", sa.Integer(), nullable=False,
                                   server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("experiments") as batch:
        batch.drop_column("job_resubmits")
