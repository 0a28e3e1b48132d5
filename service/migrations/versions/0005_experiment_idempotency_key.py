"""Experiments remember the ``Idempotency-Key`` of the POST that created them.

Revision ID: 0005
Revises: 0004
Create Date: 2025-01-05

A client whose POST timed out cannot tell whether the experiment was stored; retrying made a
second one. With the key stored under a unique index, a retry finds the first experiment, and of
two racing POSTs only one can insert. The column is nullable (a POST without the header stores
NULL, and both SQLite and PostgreSQL let NULLs repeat in a unique index); rows that exist before
this revision are NULL. A unique index rather than a table constraint: SQLite can add one without
rebuilding the table that variants and trials point at.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_experiments_idempotency_key"


def upgrade() -> None:
    with op.batch_alter_table("experiments") as batch:
        batch.add_column(sa.Column("idempotency_key", sa.String(200), nullable=True))
    op.create_index(INDEX, "experiments", ["idempotency_key"], unique=True)


def downgrade() -> None:
    op.drop_index(INDEX, table_name="experiments")
    with op.batch_alter_table("experiments") as batch:
        batch.drop_column("idempotency_key")
