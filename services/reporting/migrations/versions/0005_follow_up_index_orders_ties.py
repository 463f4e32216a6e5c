"""the follow-up index ends with the enrolment id

The follow-up list is ordered newest first with ties broken by the enrolment id; with the id in the index,
read backwards, the database takes a page straight from the index instead of reading (and sorting) every
row that shares a time with the page's last (PostgreSQL read 543 rows for a page of 50 at 1,000,000
enrolments in the bench).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05 07:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = "ix_enrolment_states_follow_up"
BEFORE = ["home_institution_id", "follow_up", "academic_year", "status_at"]


def upgrade() -> None:
    with op.batch_alter_table("enrolment_states", schema=None) as batch_op:
        batch_op.drop_index(NAME)
        batch_op.create_index(NAME, [*BEFORE, "enrolment_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("enrolment_states", schema=None) as batch_op:
        batch_op.drop_index(NAME)
        batch_op.create_index(NAME, BEFORE, unique=False)
