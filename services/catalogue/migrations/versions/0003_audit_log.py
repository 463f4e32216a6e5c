"""audit log: who changed what (shared.audit); the facet index also covers `status` (public searches leave
drafts out)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 14:56:01.799736
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shared.db

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("actor_role", sa.String(length=30), nullable=False),
        sa.Column("actor_institution_id", sa.String(length=64), nullable=True),
        sa.Column("action", sa.String(length=100), nullable=False),
        sa.Column("target_id", sa.String(length=200), nullable=True),
        sa.Column("request_id", sa.String(length=100), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index("ix_audit_log_actor", ["actor"], unique=False)
        batch_op.create_index("ix_audit_log_at", ["at"], unique=False)

    with op.batch_alter_table("offering_search", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_offering_search_facets"))
        batch_op.create_index(
            "ix_offering_search_facets",
            ["subject", "level", "languages", "delivery_mode", "provider_id", "region", "status"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("offering_search", schema=None) as batch_op:
        batch_op.drop_index("ix_offering_search_facets")
        batch_op.create_index(
            batch_op.f("ix_offering_search_facets"),
            ["subject", "level", "languages", "delivery_mode", "provider_id", "region"],
            unique=False,
        )

    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_log_at")
        batch_op.drop_index("ix_audit_log_actor")

    op.drop_table("audit_log")
