"""per-institution roll-ups of the institution-pair counters

`provider_counts` and `home_counts` sum `home_provider_counts` per (year, provider) and per (year, home
institution); `institution_billing_counts` sums `billing_counts` and `document_counts` per (year,
institution, side). They are filled here from the pair tables (exactly what the projections would have
added), so no rebuild is needed. Column lists are written out: a migration is history and must not
change when the code's counters do.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05 06:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ENROLMENT = (
    "requests",
    "awaiting_commitment",
    "confirmed",
    "waitlisted",
    "rejected",
    "withdrawn",
    "cancelled",
    "passed",
    "failed",
    "interrupted",
    "withdrawn_late",
    "credits_earned",
)
BILLING = (
    "commitments",
    "pending_count",
    "pending_cents",
    "committed_count",
    "committed_cents",
    "chargeable_count",
    "chargeable_cents",
    "rejected_count",
    "rejected_cents",
    "voided_count",
    "voided_cents",
)
DOCUMENTS = ("invoice_count", "invoiced_cents", "credit_note_count", "credited_cents")


def _counters(names: Sequence[str]) -> list[sa.Column[int]]:
    return [sa.Column(name, sa.BigInteger(), nullable=False) for name in names]


def upgrade() -> None:
    for table, key in (("provider_counts", "provider_id"), ("home_counts", "home_institution_id")):
        op.create_table(
            table,
            sa.Column("academic_year", sa.String(length=9), nullable=False),
            sa.Column(key, sa.String(length=64), nullable=False),
            *_counters(ENROLMENT),
            sa.PrimaryKeyConstraint("academic_year", key),
        )
        sums = ", ".join(f"SUM({name})" for name in ENROLMENT)
        op.execute(
            f"INSERT INTO {table} (academic_year, {key}, {', '.join(ENROLMENT)}) "
            f"SELECT academic_year, {key}, {sums} FROM home_provider_counts GROUP BY academic_year, {key}"
        )
    op.create_table(
        "institution_billing_counts",
        sa.Column("academic_year", sa.String(length=9), nullable=False),
        sa.Column("institution_id", sa.String(length=64), nullable=False),
        sa.Column("side", sa.String(length=11), nullable=False),
        *_counters(BILLING),
        *_counters(DOCUMENTS),
        sa.PrimaryKeyConstraint("academic_year", "institution_id", "side"),
    )
    with op.batch_alter_table("institution_billing_counts", schema=None) as batch_op:
        batch_op.create_index(
            "ix_institution_billing_counts_institution", ["institution_id", "academic_year"], unique=False
        )
    measures = (*BILLING, *DOCUMENTS)
    parts = []
    for side, party in (("as_provider", "payee_id"), ("as_home", "payer_id")):
        for table, own in (("billing_counts", BILLING), ("document_counts", DOCUMENTS)):
            values = ", ".join(name if name in own else f"0 AS {name}" for name in measures)
            parts.append(f"SELECT academic_year, {party} AS institution_id, '{side}' AS side, {values} FROM {table}")
    op.execute(
        f"INSERT INTO institution_billing_counts (academic_year, institution_id, side, {', '.join(measures)}) "
        f"SELECT academic_year, institution_id, side, {', '.join(f'SUM({name})' for name in measures)} "
        f"FROM ({' UNION ALL '.join(parts)}) AS sides GROUP BY academic_year, institution_id, side"
    )


def downgrade() -> None:
    with op.batch_alter_table("institution_billing_counts", schema=None) as batch_op:
        batch_op.drop_index("ix_institution_billing_counts_institution")
    op.drop_table("institution_billing_counts")
    op.drop_table("home_counts")
    op.drop_table("provider_counts")
