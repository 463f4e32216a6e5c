"""Billing tables: local copy of institutions, policies, commitments."""

import sqlalchemy as sa

from shared.bus import add_bus_tables
from shared.db import Cents, UTCDateTime
from shared.idempotency import add_idempotency_table

metadata = sa.MetaData()

institutions = sa.Table(
    "institutions",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("member", sa.Boolean, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
)

policies = sa.Table(
    "policies",
    metadata,
    sa.Column("institution_id", sa.String(64), primary_key=True),
    sa.Column("mode", sa.String(20), nullable=False),
    sa.Column("yearly_budget", Cents, nullable=True),
)

commitments = sa.Table(
    "commitments",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("enrolment_id", sa.String(36), nullable=False, unique=True),
    sa.Column("offering_id", sa.String(36), nullable=False),
    sa.Column("payer_id", sa.String(64), nullable=False, index=True),
    sa.Column("payee_id", sa.String(64), nullable=False, index=True),
    sa.Column("amount", Cents, nullable=False),
    sa.Column("price_kind", sa.String(10), nullable=False),
    sa.Column("academic_year", sa.String(9), nullable=False),
    sa.Column("status", sa.String(20), nullable=False, index=True),
    sa.Column("decided_by", sa.String(100), nullable=True),
    sa.Column("reason", sa.String(500), nullable=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

outbox, inbox = add_bus_tables(metadata)
idempotency_keys = add_idempotency_table(metadata)
