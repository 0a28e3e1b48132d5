"""Downstream evaluations as their own rows.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01

One row per (trial, task, evaluation key): its state, metrics, error and timestamps, so an
evaluation asked for after its trial finished is recorded before it runs, resumed after a
crash, and never run twice (the unique constraint). Nothing stored before changes.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

EVALUATION_STATES = ("pending", "running", "done", "failed")


def upgrade() -> None:
    op.create_table(
        "evaluations",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("experiment_id", sa.String(40), sa.ForeignKey("experiments.id"),
                  nullable=False),
        sa.Column("trial_id", sa.Integer(), sa.ForeignKey("trials.id"), nullable=False),
        sa.Column("task", sa.String(32), nullable=False),
        sa.Column("evaluation_key", sa.String(64), nullable=False),
        sa.Column("state", sa.Enum(*EVALUATION_STATES, name="evaluationstate",
                                   native_enum=False, length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("trial_id", "task", "evaluation_key",
                            name="ux_evaluations_trial_task_key"),
    )
    op.create_index("ix_evaluations_experiment_id", "evaluations", ["experiment_id"])
    op.create_index("ix_evaluations_trial_id", "evaluations", ["trial_id"])
    op.create_index("ix_evaluations_state", "evaluations", ["state"])


def downgrade() -> None:
    op.drop_table("evaluations")
