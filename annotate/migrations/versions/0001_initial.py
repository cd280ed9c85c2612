"""Initial annotation store: users, batches, items, claims, votes, audit.

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


def _one_to_five(column: str) -> sa.CheckConstraint:
    return sa.CheckConstraint(f"{column} IS NULL OR ({column} >= 1 AND {column} <= 5)", name=op.f(f"ck_votes_{column}_1_5"))


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("token_sha256", sa.String(64), nullable=False),
        sa.Column("created", WHEN, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("name", name="uq_users_name"))
    op.create_table(
        "batches",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("votes_per_item", sa.Integer(), nullable=False),
        sa.Column("tie_policy", sa.String(16), nullable=False),
        sa.Column("unsafe_veto", sa.Boolean(), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("source_uri", sa.Text(), nullable=False),
        sa.Column("created", WHEN, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_batches"),
        sa.UniqueConstraint("name", name="uq_batches_name"))
    op.create_table(
        "items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.Column("row_key", sa.BigInteger(), nullable=False),
        sa.Column("image_id", sa.String(64), nullable=False),
        sa.Column("source_uri", sa.Text(), nullable=False),
        sa.Column("unit", sa.Text(), nullable=False),
        sa.Column("caption", sa.Text(), nullable=True),
        sa.Column("caption_synthetic", sa.Text(), nullable=True),
        sa.Column("hints_json", sa.Text(), nullable=False),
        sa.Column("thumbnail", sa.LargeBinary(), nullable=True),
        sa.Column("votes_needed", sa.Integer(), nullable=False),
        sa.Column("final_level", sa.Integer(), nullable=True),
        sa.Column("adjudicated", sa.Boolean(), nullable=False),
        sa.Column("created", WHEN, nullable=False),
        sa.ForeignKeyConstraint(["batch_id"], ["batches.id"], name="fk_items_batch_id_batches"),
        sa.PrimaryKeyConstraint("id", name="pk_items"),
        sa.UniqueConstraint("batch_id", "row_key", name="uq_items_batch_id_row_key"))
    op.create_index("ix_items_batch_id_final_level", "items", ["batch_id", "final_level"])
    op.create_table(
        "claims",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("expires_at", WHEN, nullable=False),
        sa.Column("created", WHEN, nullable=False),
        sa.ForeignKeyConstraint(["item_id"], ["items.id"], name="fk_claims_item_id_items"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_claims_user_id_users"),
        sa.PrimaryKeyConstraint("id", name="pk_claims"),
        sa.UniqueConstraint("item_id", "user_id", name="uq_claims_item_id_user_id"))
    op.create_index("ix_claims_user_id", "claims", ["user_id"])
    op.create_table(
        "votes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("level", sa.Integer(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("completeness", sa.Integer(), nullable=True),
        sa.Column("correlation", sa.Integer(), nullable=True),
        sa.Column("hallucination", sa.Integer(), nullable=True),
        sa.Column("subjectivity", sa.Integer(), nullable=True),
        sa.Column("created", WHEN, nullable=False),
        sa.ForeignKeyConstraint(["item_id"], ["items.id"], name="fk_votes_item_id_items"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_votes_user_id_users"),
        sa.PrimaryKeyConstraint("id", name="pk_votes"),
        sa.UniqueConstraint("item_id", "user_id", name="uq_votes_item_id_user_id"),
        *(_one_to_five(c) for c in ("level", "completeness", "correlation", "hallucination", "subjectivity")))
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", WHEN, nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=True),
        sa.Column("detail_json", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_audit_user_id_users"),
        sa.ForeignKeyConstraint(["item_id"], ["items.id"], name="fk_audit_item_id_items"),
        sa.PrimaryKeyConstraint("id", name="pk_audit"))


def downgrade() -> None:
    for table in ("audit", "votes", "claims", "items", "batches", "users"):
        op.drop_table(table)
