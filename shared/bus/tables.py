"""The outbox and inbox tables every service carries in its own database."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

NOTIFY_CHANNEL = "tarjotin_outbox"
"""PostgreSQL: a transaction that stages events notifies this channel as it commits (a trigger on the
outbox), so that the relay, in the worker, wakes at once for events an API process staged instead of at
its next poll (`Relay.listen`). SQLite has no notifications: there the relay runs in the same process as
the API by default, woken by its commits, and polls otherwise."""

_NOTIFY_FUNCTION = "tarjotin_outbox_notify"


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


def create_outbox_notify(op: Any) -> None:
    """For a migration: on PostgreSQL, an INSERT into `outbox` notifies `NOTIFY_CHANNEL` (once per
    statement; PostgreSQL folds a transaction's identical notifications into one, sent at its commit)."""
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        f"CREATE FUNCTION {_NOTIFY_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS "
        f"$$ BEGIN PERFORM pg_notify('{NOTIFY_CHANNEL}', ''); RETURN NULL; END $$"
    )
    op.execute(
        f"CREATE TRIGGER outbox_notify AFTER INSERT ON outbox FOR EACH STATEMENT EXECUTE FUNCTION {_NOTIFY_FUNCTION}()"
    )


def drop_outbox_notify(op: Any) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER outbox_notify ON outbox")
    op.execute(f"DROP FUNCTION {_NOTIFY_FUNCTION}()")
