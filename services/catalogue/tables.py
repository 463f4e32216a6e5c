"""Catalogue tables."""

import sqlalchemy as sa

from shared.bus import add_bus_tables
from shared.db import Cents, DecimalText
from shared.idempotency import add_idempotency_table

metadata = sa.MetaData()

institutions = sa.Table(
    "institutions",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name_fi", sa.String(200)),
    sa.Column("name_sv", sa.String(200)),
    sa.Column("name_en", sa.String(200)),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("member", sa.Boolean, nullable=False),
    sa.Column("municipality", sa.String(100)),
    sa.Column("region", sa.String(100)),
    sa.Column("business_id", sa.String(20)),
    sa.Column("einvoice_address", sa.String(100)),
    sa.Column("version", sa.Integer, nullable=False),
)

pricing_guidelines = sa.Table(
    "pricing_guidelines",
    metadata,
    sa.Column("academic_year", sa.String(9), primary_key=True),
    sa.Column("price_per_credit", Cents, nullable=False),
    sa.Column("external_surcharge_percent", DecimalText, nullable=False),
    sa.Column("late_withdrawal_percent", DecimalText, nullable=False),
    sa.Column("free_cancellation_days", sa.Integer, nullable=False),
)

courses = sa.Table(
    "courses",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("provider_id", sa.String(64), sa.ForeignKey("institutions.id"), nullable=False),
    sa.Column("code", sa.String(50), nullable=False),
    sa.Column("title_fi", sa.String(300)),
    sa.Column("title_sv", sa.String(300)),
    sa.Column("title_en", sa.String(300)),
    sa.Column("description_fi", sa.Text),
    sa.Column("description_sv", sa.Text),
    sa.Column("description_en", sa.Text),
    sa.Column("subject", sa.String(100), nullable=False),
    sa.Column("level", sa.String(50), nullable=False),
    sa.Column("credits", DecimalText, nullable=False),
    sa.Column("languages", sa.String(50), nullable=False),
    sa.Column("delivery_mode", sa.String(40), nullable=False),
    sa.Column("teacher_contact", sa.String(200)),
    sa.UniqueConstraint("provider_id", "code", name="uq_courses_provider_code"),
)

offerings = sa.Table(
    "offerings",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("course_id", sa.String(36), sa.ForeignKey("courses.id"), nullable=False),
    sa.Column("provider_id", sa.String(64), sa.ForeignKey("institutions.id"), nullable=False),
    sa.Column("academic_year", sa.String(9), nullable=False, index=True),
    sa.Column("start_date", sa.Date, nullable=False),
    sa.Column("end_date", sa.Date, nullable=False),
    sa.Column("enrolment_opens", sa.Date, nullable=False),
    sa.Column("enrolment_closes", sa.Date, nullable=False),
    sa.Column("min_participants", sa.Integer, nullable=False),
    sa.Column("max_participants", sa.Integer, nullable=False),
    sa.Column("member_price", Cents, nullable=False),
    sa.Column("external_price", Cents, nullable=False),
    sa.Column("free_cancellation_deadline", sa.Date, nullable=False),
    sa.Column("status", sa.String(20), nullable=False, index=True),
    sa.Column("version", sa.Integer, nullable=False),
)

outbox, inbox = add_bus_tables(metadata)
idempotency_keys = add_idempotency_table(metadata)
