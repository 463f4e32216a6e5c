"""Catalogue tables: the aggregates, then the search index the catalogue keeps of them."""

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
    sa.Column("version", sa.Integer, nullable=False, server_default="1"),
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
    sa.Column("course_id", sa.String(36), sa.ForeignKey("courses.id"), nullable=False, index=True),
    sa.Column("provider_id", sa.String(64), sa.ForeignKey("institutions.id"), nullable=False, index=True),
    sa.Column("external_id", sa.String(100), comment="the provider's own id of the offering (CSV import key)"),
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
    sa.Column("late_withdrawal_percent", DecimalText, comment="the year's guideline at publish time"),
    sa.Column("published_at", UTCDateTime, comment="set once published: other services know the offering"),
    sa.Column("cancellation_reason", sa.String(500)),
    sa.Column("version", sa.Integer, nullable=False),
    sa.UniqueConstraint("provider_id", "external_id", name="uq_offerings_provider_external_id"),
)

# --- the search index (derived; rebuilt from the tables above by services/catalogue/search.py) -----

offering_search = sa.Table(
    "offering_search",
    metadata,
    sa.Column("offering_id", sa.String(36), primary_key=True),
    sa.Column("course_id", sa.String(36), nullable=False, index=True),
    sa.Column("provider_id", sa.String(64), nullable=False),
    sa.Column("subject", sa.String(100), nullable=False),
    sa.Column("level", sa.String(50), nullable=False),
    sa.Column("languages", sa.String(50), nullable=False),
    sa.Column("delivery_mode", sa.String(40), nullable=False),
    sa.Column("region", sa.String(100)),
    sa.Column("academic_year", sa.String(9), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("start_date", sa.Date, nullable=False),
    sa.Column("enrolment_opens", sa.Date, nullable=False),
    sa.Column("enrolment_closes", sa.Date, nullable=False),
    sa.Column("member_price", Cents, nullable=False),
    sa.Column("title_key", sa.String(300), nullable=False),
    sa.Index("ix_offering_search_start", "start_date", "offering_id"),
    sa.Index("ix_offering_search_title", "title_key", "offering_id"),
    sa.Index("ix_offering_search_price", "member_price", "offering_id"),
    sa.Index("ix_offering_search_year_start", "academic_year", "start_date"),
    sa.Index("ix_offering_search_status_window", "status", "enrolment_opens", "enrolment_closes"),
    # Covers the facet counts (status too: public searches leave drafts out, see search/query.py).
    sa.Index(
        "ix_offering_search_facets",
        "subject",
        "level",
        "languages",
        "delivery_mode",
        "provider_id",
        "region",
        "status",
    ),
    sa.Index("ix_offering_search_provider", "provider_id", "start_date"),
)

# One row per (normalized word, course): prefix search is a range scan of the primary key, which
# compares bytes (PostgreSQL: collation "C") so that `term >= 'matem' AND term < 'maten'` is exact.
course_terms = sa.Table(
    "course_terms",
    metadata,
    sa.Column("term", sa.String(64).with_variant(sa.String(64, collation="C"), "postgresql"), primary_key=True),
    sa.Column("course_id", sa.String(36), primary_key=True, index=True),
    sa.Column("weight", sa.SmallInteger, nullable=False),
    sqlite_with_rowid=False,  # the key then holds the weight: a prefix scan reads no other page
)

# One row: a number bumped in the same transaction as every change to the index above, so that a
# cached facet count knows when it is stale (services/catalogue/search.py::FacetCache).
search_state = sa.Table(
    "search_state",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("generation", sa.BigInteger, nullable=False),
)

outbox, inbox = add_bus_tables(metadata)
idempotency_keys = add_idempotency_table(metadata)
audit_log = add_audit_table(metadata)
