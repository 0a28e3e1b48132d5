"""Variant names, the baseline and the primary metric become TEXT on PostgreSQL.

Revision ID: 0003
Revises: 0002
Create Date: 2025-01-03

A factorial variant's name joins every factor's level label, so a spec with a few factors whose
levels are sets of overrides passes 200 characters; PostgreSQL then refused the whole spec.
SQLite never enforces VARCHAR lengths, so it needs nothing (and changing a declared type there
means rebuilding tables that foreign keys point at): this revision only stamps it.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (("variants", "name", 200), ("experiments", "baseline", 200),
           ("experiments", "primary_metric", 100))


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column, length in COLUMNS:
        op.alter_column(table, column, type_=sa.Text(), existing_type=sa.String(length),
                        existing_nullable=False)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column, length in COLUMNS:  # lossy: longer names are cut to fit
        op.alter_column(table, column, type_=sa.String(length), existing_type=sa.Text(),
                        existing_nullable=False,
                        postgresql_using=f"left({column}, {length})")
