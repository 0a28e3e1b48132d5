"""Trials record the Ray node of their latest attempt.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30

``worker_node`` (the host name) cannot tell two Ray nodes of one host apart, nor match a trial
to a node of Ray's dashboard; the node id can. Trials stored before have none (NULL).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("trials") as batch:
        batch.add_column(sa.Column("worker_ray_node", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("trials") as batch:
        batch.drop_column("worker_ray_node")
