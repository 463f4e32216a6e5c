"""outbox notify: on PostgreSQL an outbox insert wakes the relay in the worker (LISTEN/NOTIFY)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 19:40:00
"""

from collections.abc import Sequence

from alembic import op

from shared.bus.tables import create_outbox_notify, drop_outbox_notify

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_outbox_notify(op)


def downgrade() -> None:
    drop_outbox_notify(op)
