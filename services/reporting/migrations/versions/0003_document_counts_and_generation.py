"""document counters per (year, payee, payer) and the read models' generation

`document_counts` is filled here from the invoices and credit notes already projected (exactly what
the projections would have counted), so no rebuild is needed. `read_model_generation` gets its one
row; the projections raise it in every transaction that may change a read model.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 03:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "document_counts",
        sa.Column("academic_year", sa.String(length=9), nullable=False),
        sa.Column("payee_id", sa.String(length=64), nullable=False),
        sa.Column("payer_id", sa.String(length=64), nullable=False),
        sa.Column("invoice_count", sa.BigInteger(), nullable=False),
        sa.Column("invoiced_cents", sa.BigInteger(), nullable=False),
        sa.Column("credit_note_count", sa.BigInteger(), nullable=False),
        sa.Column("credited_cents", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("academic_year", "payee_id", "payer_id"),
    )
    with op.batch_alter_table("document_counts", schema=None) as batch_op:
        batch_op.create_index("ix_document_counts_payer", ["payer_id", "academic_year"], unique=False)

    op.create_table(
        "read_model_generation",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.execute("INSERT INTO read_model_generation (id, generation) VALUES (1, 0)")
    op.execute(
        """
        INSERT INTO document_counts
            (academic_year, payee_id, payer_id, invoice_count, invoiced_cents, credit_note_count, credited_cents)
        SELECT academic_year, payee_id, payer_id, SUM(ic), SUM(ia), SUM(cc), SUM(ca) FROM (
            SELECT academic_year, payee_id, payer_id, 1 AS ic, total AS ia, 0 AS cc, 0 AS ca FROM invoices
            UNION ALL
            SELECT academic_year, payee_id, payer_id, 0, 0, 1, total FROM credit_notes
        ) AS documents
        GROUP BY academic_year, payee_id, payer_id
        """
    )


def downgrade() -> None:
    op.drop_table("read_model_generation")
    with op.batch_alter_table("document_counts", schema=None) as batch_op:
        batch_op.drop_index("ix_document_counts_payer")

    op.drop_table("document_counts")
