"""Enrolment tables: local copies of offerings and institutions, students, enrolments, audit log."""

import sqlalchemy as sa

from shared.audit import add_audit_table
from shared.bus import add_bus_tables
from shared.db import Cents, UTCDateTime
from shared.idempotency import add_idempotency_table

metadata = sa.MetaData()

ACTIVE = ("awaiting_commitment", "waitlisted", "confirmed")

institutions = sa.Table(
    "institutions",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("member", sa.Boolean, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
)

offerings = sa.Table(
    "offerings",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("provider_id", sa.String(64), nullable=False),
    sa.Column("academic_year", sa.String(9), nullable=False),
    sa.Column("title", sa.String(300), nullable=False),
    sa.Column("start_date", sa.Date, nullable=False),
    sa.Column("enrolment_opens", sa.Date, nullable=False),
    sa.Column("enrolment_closes", sa.Date, nullable=False),
    sa.Column("free_cancellation_deadline", sa.Date, nullable=False),
    sa.Column("max_participants", sa.Integer, nullable=False),
    sa.Column("credits", sa.String(10), nullable=False, server_default="0"),
    sa.Column("late_withdrawal_percent", sa.String(10), nullable=False, server_default="100"),
    sa.Column("member_price", Cents, nullable=False),
    sa.Column("external_price", Cents, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("held", sa.Integer, nullable=False, server_default="0"),
    sa.Column("waitlist_seq", sa.Integer, nullable=False, server_default="0"),
    sa.Column("version", sa.Integer, nullable=False),
    # Not `held <= max_participants`: a provider may lower the maximum below the seats already held;
    # nobody loses a seat, new requests just wait until enough are released.
    sa.CheckConstraint("held >= 0", name="ck_offerings_held"),
)

# Offerings cancelled before this service saw them published (a cancelled draft, or events out of order):
# a later, older `offering.published` must not bring them back.
offering_tombstones = sa.Table(
    "offering_tombstones",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
)

students = sa.Table(
    "students",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True, comment="the pseudonymous student_ref of events"),
    sa.Column("home_institution_id", sa.String(64), nullable=False),
    # Personal data: all three become NULL when the student is erased. The row (the student_ref) stays,
    # so enrolments, money and reports still add up; NULL learner ids never collide in the unique
    # constraint, so the same learner enrolling again becomes a new pseudonymous student.
    sa.Column("learner_id", sa.String(100), nullable=True),
    sa.Column("name", sa.String(200), nullable=True),
    sa.Column("email", sa.String(254), nullable=True),
    sa.Column("erased_at", UTCDateTime, nullable=True),
    sa.UniqueConstraint("home_institution_id", "learner_id", name="uq_students_learner"),
)

enrolments = sa.Table(
    "enrolments",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("offering_id", sa.String(36), sa.ForeignKey("offerings.id"), nullable=False),
    sa.Column("student_id", sa.String(36), sa.ForeignKey("students.id"), nullable=False),
    sa.Column("home_institution_id", sa.String(64), nullable=False),
    sa.Column("status", sa.String(30), nullable=False),
    sa.Column("holds_seat", sa.Boolean, nullable=False),
    sa.Column("waitlist_seq", sa.Integer, nullable=True),
    sa.Column("commitment_id", sa.String(36), nullable=True),
    sa.Column("withdrawn_by", sa.String(100), nullable=True),
    sa.Column("grade", sa.String(20), nullable=True),
    sa.Column("credits_earned", sa.String(10), nullable=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Index("ix_enrolments_offering_status_seq", "offering_id", "status", "waitlist_seq"),
    sa.Index("ix_enrolments_home", "home_institution_id"),
    sa.Index(
        "uq_enrolments_one_active",
        "offering_id",
        "student_id",
        unique=True,
        sqlite_where=sa.text("status IN ('awaiting_commitment', 'waitlisted', 'confirmed')"),
        postgresql_where=sa.text("status IN ('awaiting_commitment', 'waitlisted', 'confirmed')"),
    ),
)

outbox, inbox = add_bus_tables(metadata)
idempotency_keys = add_idempotency_table(metadata)
audit_log = add_audit_table(metadata)
