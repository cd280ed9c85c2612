"""Initial workflow store: runs, their partitions, watermarks, stages, attempts, locks, schedule slots.

Revision ID: 0001
Revises:
"""
from alembic import op
import sqlalchemy as sa

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

WHEN = sa.DateTime(timezone=True)
RUN_STATES = ("pending", "running", "succeeded", "failed", "empty", "abandoned")
STAGE_STATES = ("pending", "running", "succeeded", "failed", "skipped")
ATTEMPT_STATES = ("running", "succeeded", "failed", "timeout", "stopped")


def _one_of(table: str, column: str, values: tuple[str, ...]) -> sa.CheckConstraint:
    listed = ", ".join(f"'{v}'" for v in values)
    return sa.CheckConstraint(f"{column} IN ({listed})", name=op.f(f"ck_{table}_{column}_known"))


def upgrade() -> None:
    op.create_table(
        "workflow_runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("workflow", sa.String(64), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("slot", sa.String(32), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("started_at", WHEN, nullable=True),
        sa.Column("finished_at", WHEN, nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("output_root", sa.Text(), nullable=False),
        sa.Column("spec_digest", sa.String(64), nullable=False),
        sa.Column("resumed", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_workflow_runs"),
        _one_of("workflow_runs", "state", RUN_STATES),
        _one_of("workflow_runs", "trigger", ("manual", "schedule")))
    op.create_index("ix_workflow_runs_workflow_state", "workflow_runs", ["workflow", "state"])
    op.create_table(
        "workflow_run_partitions",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("uri", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.String(200), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["workflow_runs.id"], name="fk_workflow_run_partitions_run_id_workflow_runs"),
        sa.PrimaryKeyConstraint("run_id", "uri", name="pk_workflow_run_partitions"))
    op.create_table(
        "workflow_watermarks",
        sa.Column("workflow", sa.String(64), nullable=False),
        sa.Column("uri", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.String(200), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("consumed_at", WHEN, nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["workflow_runs.id"], name="fk_workflow_watermarks_run_id_workflow_runs"),
        sa.PrimaryKeyConstraint("workflow", "uri", name="pk_workflow_watermarks"))
    op.create_table(
        "workflow_stages",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("output", sa.Text(), nullable=True),
        sa.Column("started_at", WHEN, nullable=True),
        sa.Column("finished_at", WHEN, nullable=True),
        sa.Column("rows_in", sa.BigInteger(), nullable=True),
        sa.Column("rows_out", sa.BigInteger(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["workflow_runs.id"], name="fk_workflow_stages_run_id_workflow_runs"),
        sa.PrimaryKeyConstraint("id", name="pk_workflow_stages"),
        sa.UniqueConstraint("run_id", "position", name="uq_workflow_stages_run_id_position"),
        _one_of("workflow_stages", "state", STAGE_STATES))
    op.create_table(
        "workflow_attempts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("stage_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.String(200), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("started_at", WHEN, nullable=False),
        sa.Column("finished_at", WHEN, nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("log_tail", sa.Text(), nullable=False),
        sa.Column("log_path", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["stage_id"], ["workflow_stages.id"], name="fk_workflow_attempts_stage_id_workflow_stages"),
        sa.PrimaryKeyConstraint("id", name="pk_workflow_attempts"),
        sa.UniqueConstraint("stage_id", "number", name="uq_workflow_attempts_stage_id_number"),
        _one_of("workflow_attempts", "state", ATTEMPT_STATES))
    op.create_table(
        "workflow_locks",
        sa.Column("workflow", sa.String(64), nullable=False),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("acquired_at", WHEN, nullable=False),
        sa.Column("expires_at", WHEN, nullable=False),
        sa.PrimaryKeyConstraint("workflow", name="pk_workflow_locks"))
    op.create_table(
        "workflow_slots",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("workflow", sa.String(64), nullable=False),
        sa.Column("slot", sa.String(32), nullable=False),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("claimed_at", WHEN, nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["workflow_runs.id"], name="fk_workflow_slots_run_id_workflow_runs"),
        sa.PrimaryKeyConstraint("id", name="pk_workflow_slots"),
        sa.UniqueConstraint("workflow", "slot", name="uq_workflow_slots_workflow_slot"))


def downgrade() -> None:
    for table in ("workflow_slots", "workflow_locks", "workflow_attempts", "workflow_stages", "workflow_watermarks",
                  "workflow_run_partitions"):
        op.drop_table(table)
    op.drop_index("ix_workflow_runs_workflow_state", table_name="workflow_runs")
    op.drop_table("workflow_runs")
