"""Reporting tables: the event store and the read models projected from it."""

import sqlalchemy as sa

from shared.bus import add_inbox_table
from shared.db import UTCDateTime

metadata = sa.MetaData()

event_store = sa.Table(
    "event_store",
    metadata,
    sa.Column("position", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.String(36), nullable=False, unique=True),
    sa.Column("type", sa.String(120), nullable=False),
    sa.Column("subject", sa.String(100), nullable=False),
    sa.Column("sequence", sa.Integer, nullable=False),
    sa.Column("time", UTCDateTime, nullable=False),
    sa.Column("envelope", sa.LargeBinary, nullable=False),
)

offerings = sa.Table(
    "offerings",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("provider_id", sa.String(64), nullable=False),
    sa.Column("title", sa.String(300), nullable=False),
    sa.Column("subject", sa.String(100), nullable=False),
    sa.Column("academic_year", sa.String(9), nullable=False, index=True),
    sa.Column("max_participants", sa.Integer, nullable=False),
    sa.Column("min_participants", sa.Integer, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
)

enrolment_states = sa.Table(
    "enrolment_states",
    metadata,
    sa.Column("enrolment_id", sa.String(36), primary_key=True),
    sa.Column("offering_id", sa.String(36), nullable=False),
    sa.Column("home_institution_id", sa.String(64), nullable=False),
    sa.Column("academic_year", sa.String(9), nullable=False),
    sa.Column("status", sa.String(30), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
)

participant_counts = sa.Table(
    "participant_counts",
    metadata,
    sa.Column("offering_id", sa.String(36), primary_key=True),
    sa.Column("home_institution_id", sa.String(64), primary_key=True),
    sa.Column("status", sa.String(30), primary_key=True),
    sa.Column("academic_year", sa.String(9), nullable=False, index=True),
    sa.Column("count", sa.Integer, nullable=False),
)

inbox = add_inbox_table(metadata)
