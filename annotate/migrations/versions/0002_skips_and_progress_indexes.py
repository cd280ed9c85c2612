"""Skips (an item an annotator passed on is not offered to them again); indexes for progress and audit reads.

Revision ID: 0002
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "skips",
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["item_id"], ["items.id"], name="fk_skips_item_id_items"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_skips_user_id_users"),
        sa.PrimaryKeyConstraint("item_id", "user_id", name="pk_skips"))
    op.create_index("ix_votes_user_id_created", "votes", ["user_id", "created"])
    op.create_index("ix_audit_at", "audit", ["at"])


def downgrade() -> None:
    op.drop_index("ix_audit_at", table_name="audit")
    op.drop_index("ix_votes_user_id_created", table_name="votes")
    op.drop_table("skips")
