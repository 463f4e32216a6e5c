"""Billing tables: local copy of institutions, policies, commitments, invoices and credit notes, audit log."""

import sqlalchemy as sa

from shared.audit import add_audit_table
from shared.bus import add_bus_tables
from shared.db import Cents, DecimalText, UTCDateTime
from shared.idempotency import add_idempotency_table

metadata = sa.MetaData()

institutions = sa.Table(
    "institutions",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("member", sa.Boolean, nullable=False),
    sa.Column("name_fi", sa.String(300), nullable=True),
    sa.Column("name_sv", sa.String(300), nullable=True),
    sa.Column("name_en", sa.String(300), nullable=True),
    sa.Column("business_id", sa.String(20), nullable=True),
    sa.Column("einvoice_address", sa.String(100), nullable=True),
    sa.Column("municipality", sa.String(100), nullable=True),
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
    sa.Column("free_cancellation_deadline", sa.Date, nullable=True, index=True),
    sa.Column("charge_percent", DecimalText, nullable=True),
    sa.Column("chargeable_amount", Cents, nullable=True),
    sa.Column("chargeable_on", sa.Date, nullable=True),
    sa.Column("voided_on", sa.Date, nullable=True),
    # Invoiced minus credited so far; an invoice run brings it to what is due (see domain.due).
    sa.Column("billed_amount", Cents, nullable=False, server_default="0"),
    # The newest enrolment event applied: older or repeated ones change nothing.
    sa.Column("enrolment_seq", sa.Integer, nullable=False, server_default="0"),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

# Enrolment events that arrived before the `enrolment.requested` that opens their commitment.
parked_events = sa.Table(
    "parked_events",
    metadata,
    sa.Column("event_id", sa.String(36), primary_key=True),
    sa.Column("enrolment_id", sa.String(36), nullable=False, index=True),
    sa.Column("sequence", sa.Integer, nullable=False),
    sa.Column("payload", sa.LargeBinary, nullable=False),
    sa.Column("parked_at", UTCDateTime, nullable=False),
)

invoice_runs = sa.Table(
    "invoice_runs",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("period_start", sa.Date, nullable=False),
    sa.Column("period_end", sa.Date, nullable=False),
    sa.Column("issue_date", sa.Date, nullable=False),
    # The one provider a run was limited to (an institution's finance runs its own invoices); null: all.
    sa.Column("payee_id", sa.String(64), nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

# Invoices and credit notes; a credit note names the invoice it credits.
invoices = sa.Table(
    "invoices",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("kind", sa.String(12), nullable=False),
    sa.Column("number", sa.String(100), nullable=False, unique=True),
    sa.Column("run_id", sa.String(36), sa.ForeignKey("invoice_runs.id"), nullable=False),
    sa.Column("payee_id", sa.String(64), nullable=False, index=True),
    sa.Column("payer_id", sa.String(64), nullable=False, index=True),
    sa.Column("issue_date", sa.Date, nullable=False),
    sa.Column("due_date", sa.Date, nullable=False),
    sa.Column("period_start", sa.Date, nullable=False),
    sa.Column("period_end", sa.Date, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("vat_rate", DecimalText, nullable=False),
    sa.Column("net_total", Cents, nullable=False),
    sa.Column("vat_amount", Cents, nullable=False),
    sa.Column("total", Cents, nullable=False),
    sa.Column("original_invoice_id", sa.String(36), sa.ForeignKey("invoices.id"), nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

invoice_lines = sa.Table(
    "invoice_lines",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("invoice_id", sa.String(36), sa.ForeignKey("invoices.id"), nullable=False, index=True),
    sa.Column("line_no", sa.Integer, nullable=False),
    sa.Column("commitment_id", sa.String(36), sa.ForeignKey("commitments.id"), nullable=False, index=True),
    sa.Column("enrolment_id", sa.String(36), nullable=False),
    sa.Column("offering_id", sa.String(36), nullable=False),
    sa.Column("academic_year", sa.String(9), nullable=False),
    sa.Column("description", sa.String(500), nullable=False),
    sa.Column("amount", Cents, nullable=False),
    sa.UniqueConstraint("invoice_id", "line_no"),
)

# The last number issued per payee, series (invoice / credit note) and year: numbers never repeat or skip.
invoice_counters = sa.Table(
    "invoice_counters",
    metadata,
    sa.Column("payee_id", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(12), primary_key=True),
    sa.Column("year", sa.Integer, primary_key=True),
    sa.Column("last_number", sa.Integer, nullable=False),
)

outbox, inbox = add_bus_tables(metadata)
idempotency_keys = add_idempotency_table(metadata)
audit_log = add_audit_table(metadata)
