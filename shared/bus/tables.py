"""The outbox and inbox tables every service carries in its own database."""

from __future__ import annotations

import sqlalchemy as sa


def add_bus_tables(metadata: sa.MetaData) -> tuple[sa.Table, sa.Table]:
    """Declare `outbox` and `inbox` on a service's metadata; returns them."""
    return add_outbox_table(metadata), add_inbox_table(metadata)


def add_outbox_table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        "outbox",
        metadata,
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(36), nullable=False, unique=True),
        sa.Column("routing_key", sa.String(100), nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("published_at", sa.Float, nullable=True),
        sa.Index(
            "ix_outbox_pending",
            "id",
            sqlite_where=sa.text("published_at IS NULL"),
            postgresql_where=sa.text("published_at IS NULL"),
        ),
    )


def add_inbox_table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        "inbox",
        metadata,
        sa.Column("consumer", sa.String(100), primary_key=True),
        sa.Column("event_id", sa.String(36), primary_key=True),
        sa.Column("processed_at", sa.Float, nullable=False),
    )
