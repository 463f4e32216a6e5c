"""Reporting tables: the event store, and the read models projected from it (all rebuildable).

Three kinds of read model (see docs/decisions/007-reporting-read-models.md):
- copies of reference data: `institutions`, `offerings`;
- state rows, one per aggregate, holding its newest status and `version` (the event `sequence`):
  `enrolment_states`, `commitment_states`, `invoices`, `credit_notes`;
- counter rows keyed by report dimensions, moved by the projections whenever a state changes. Their
  size is bounded by the catalogue and the number of institutions, never by the number of enrolments:
  `offering_counts`, `offering_home_counts`, `home_provider_counts` (same enrolment counters at three
  grains), `billing_counts` (commitments) and `document_counts` (invoices and credit notes);
- roll-ups of the institution-pair tables per institution (`provider_counts`, `home_counts`,
  `institution_billing_counts`), moved by the same projections in the same transaction. A pair table
  grows towards institutions² rows a year as enrolments spread over the network; a report per
  institution or per year reads the roll-up's one row per institution instead (`ROLLUPS` says how each
  is derived from its pair tables, for the migration that adds them, the bench's seeder and the tests).

`read_model_generation` is not a read model: the projections raise it in every transaction that may
change a read model, so the API can keep answers until it moves (see `cache.py`).
"""

from typing import Any

import sqlalchemy as sa

from services.reporting.domain import BILLING_COUNTERS, DOCUMENT_COUNTERS, ENROLMENT_COUNTERS
from shared.bus import add_inbox_table
from shared.db import Cents, DecimalText, UTCDateTime

metadata = sa.MetaData()
BIG_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")

event_store = sa.Table(
    "event_store",
    metadata,
    sa.Column("position", BIG_ID, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.String(36), nullable=False, unique=True),
    sa.Column("type", sa.String(120), nullable=False),
    sa.Column("subject", sa.String(100), nullable=False),
    sa.Column("sequence", sa.Integer, nullable=False),
    sa.Column("time", UTCDateTime, nullable=False),
    sa.Column("envelope", sa.LargeBinary, nullable=False),
)

projection_state = sa.Table(
    "projection_state",
    metadata,
    sa.Column("name", sa.String(40), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("events", sa.BigInteger, nullable=False),
    sa.Column("rebuilt_at", UTCDateTime, nullable=False),
)

# --- reference data -------------------------------------------------------------------------------

institutions = sa.Table(
    "institutions",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(300), nullable=False),
    sa.Column("member", sa.Boolean, nullable=False),
    sa.Column("region", sa.String(100), nullable=True),
    sa.Column("municipality", sa.String(100), nullable=True),
    sa.Column("version", sa.Integer, nullable=False),
)

offerings = sa.Table(
    "offerings",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("provider_id", sa.String(64), nullable=False),
    # Known once offering.published/updated arrived (`info_version` > 0); a cancellation may come first.
    sa.Column("title", sa.String(300), nullable=True),
    sa.Column("subject", sa.String(100), nullable=True),
    sa.Column("level", sa.String(100), nullable=True),
    sa.Column("credits", DecimalText, nullable=True),
    sa.Column("academic_year", sa.String(9), nullable=True),
    sa.Column("start_date", sa.Date, nullable=True),
    sa.Column("end_date", sa.Date, nullable=True),
    sa.Column("period", sa.String(7), nullable=True),
    sa.Column("region", sa.String(100), nullable=True),
    sa.Column("max_participants", sa.Integer, nullable=True),
    sa.Column("min_participants", sa.Integer, nullable=True),
    sa.Column("info_version", sa.Integer, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Index("ix_offerings_year_provider", "academic_year", "provider_id"),
    sa.Index("ix_offerings_year_subject", "academic_year", "subject"),
)

# --- state rows -----------------------------------------------------------------------------------

enrolment_states = sa.Table(
    "enrolment_states",
    metadata,
    sa.Column("enrolment_id", sa.String(36), primary_key=True),
    sa.Column("offering_id", sa.String(36), nullable=False),
    sa.Column("provider_id", sa.String(64), nullable=False),
    sa.Column("home_institution_id", sa.String(64), nullable=False),
    sa.Column("academic_year", sa.String(9), nullable=False),
    sa.Column("student_ref", sa.String(64), nullable=False),
    sa.Column("status", sa.String(30), nullable=False),
    sa.Column("late", sa.Boolean, nullable=False),
    sa.Column("credits_centi", sa.Integer, nullable=False),
    sa.Column("grade", sa.String(20), nullable=True),
    sa.Column("follow_up", sa.Boolean, nullable=False),
    sa.Column("status_at", UTCDateTime, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    # the state before the newest change, returned by the same upsert that writes the new one
    sa.Column("prev_status", sa.String(30), nullable=True),
    sa.Column("prev_late", sa.Boolean, nullable=True),
    sa.Column("prev_credits_centi", sa.Integer, nullable=True),
    # The follow-up list's whole order (newest first, ties by id) comes from the index: a page reads its rows only.
    sa.Index(
        "ix_enrolment_states_follow_up",
        "home_institution_id",
        "follow_up",
        "academic_year",
        "status_at",
        "enrolment_id",
    ),
)

commitment_states = sa.Table(
    "commitment_states",
    metadata,
    sa.Column("commitment_id", sa.String(36), primary_key=True),
    sa.Column("enrolment_id", sa.String(36), nullable=False),
    sa.Column("offering_id", sa.String(36), nullable=False),
    sa.Column("payer_id", sa.String(64), nullable=False),
    sa.Column("payee_id", sa.String(64), nullable=False),
    sa.Column("academic_year", sa.String(9), nullable=False),
    sa.Column("amount", Cents, nullable=False),
    sa.Column("chargeable_amount", Cents, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("prev_status", sa.String(20), nullable=True),
    sa.Column("prev_amount", Cents, nullable=True),
    sa.Column("prev_chargeable_amount", Cents, nullable=True),
)

invoices = sa.Table(
    "invoices",
    metadata,
    sa.Column("invoice_id", sa.String(36), primary_key=True),
    sa.Column("number", sa.String(40), nullable=False),
    sa.Column("payee_id", sa.String(64), nullable=False),
    sa.Column("payer_id", sa.String(64), nullable=False),
    sa.Column("total", Cents, nullable=False),
    sa.Column("commitment_count", sa.Integer, nullable=False),
    sa.Column("period_start", sa.Date, nullable=False),
    sa.Column("period_end", sa.Date, nullable=False),
    sa.Column("issued_at", UTCDateTime, nullable=False),
    sa.Column("academic_year", sa.String(9), nullable=False),
    sa.Index("ix_invoices_year_issued", "academic_year", "issued_at"),
    sa.Index("ix_invoices_issued", "issued_at"),
)

credit_notes = sa.Table(
    "credit_notes",
    metadata,
    sa.Column("credit_note_id", sa.String(36), primary_key=True),
    sa.Column("number", sa.String(40), nullable=False),
    sa.Column("invoice_id", sa.String(36), nullable=False),
    sa.Column("payee_id", sa.String(64), nullable=False),
    sa.Column("payer_id", sa.String(64), nullable=False),
    sa.Column("total", Cents, nullable=False),
    sa.Column("issued_at", UTCDateTime, nullable=False),
    sa.Column("academic_year", sa.String(9), nullable=False),
    sa.Index("ix_credit_notes_year_issued", "academic_year", "issued_at"),
    sa.Index("ix_credit_notes_issued", "issued_at"),
)

# --- counters -------------------------------------------------------------------------------------


def _counters(names: tuple[str, ...]) -> list[sa.Column[int]]:
    return [sa.Column(name, sa.BigInteger, nullable=False) for name in names]


offering_counts = sa.Table(
    "offering_counts",
    metadata,
    sa.Column("offering_id", sa.String(36), primary_key=True),
    sa.Column("provider_id", sa.String(64), nullable=False),
    sa.Column("academic_year", sa.String(9), nullable=False),
    *_counters(ENROLMENT_COUNTERS),
    sa.Index("ix_offering_counts_year_provider", "academic_year", "provider_id"),
)

offering_home_counts = sa.Table(
    "offering_home_counts",
    metadata,
    sa.Column("offering_id", sa.String(36), primary_key=True),
    sa.Column("home_institution_id", sa.String(64), primary_key=True),
    sa.Column("provider_id", sa.String(64), nullable=False),
    sa.Column("academic_year", sa.String(9), nullable=False),
    *_counters(ENROLMENT_COUNTERS),
    sa.Index("ix_offering_home_counts_home", "home_institution_id", "academic_year"),
    sa.Index("ix_offering_home_counts_year_provider", "academic_year", "provider_id"),
)


def _yearly(name: str, keys: dict[str, int], counters: tuple[str, ...], *indexes: sa.Index) -> sa.Table:
    """A counter table keyed by academic year and `keys` (text columns of the given lengths), in that order."""
    key_columns = (sa.Column(key, sa.String(length), primary_key=True) for key, length in keys.items())
    year = sa.Column("academic_year", sa.String(9), primary_key=True)
    return sa.Table(name, metadata, year, *key_columns, *_counters(counters), *indexes)


INSTITUTION = 64
home_provider_counts = _yearly(
    "home_provider_counts", {"home_institution_id": INSTITUTION, "provider_id": INSTITUTION}, ENROLMENT_COUNTERS
)
billing_counts = _yearly(
    "billing_counts",
    {"payee_id": INSTITUTION, "payer_id": INSTITUTION},
    BILLING_COUNTERS,
    sa.Index("ix_billing_counts_payer", "payer_id", "academic_year"),
)
document_counts = _yearly(
    "document_counts",
    {"payee_id": INSTITUTION, "payer_id": INSTITUTION},
    DOCUMENT_COUNTERS,
    sa.Index("ix_document_counts_payer", "payer_id", "academic_year"),
)
"""Invoices and credit notes per (year issued, payee, payer): the billing report for a period reads the
documents themselves; without one, the roll-up of these (and of `billing_counts`) below."""

provider_counts = _yearly("provider_counts", {"provider_id": INSTITUTION}, ENROLMENT_COUNTERS)
"""`home_provider_counts` summed over home institutions: one row per (year, provider)."""

home_counts = _yearly("home_counts", {"home_institution_id": INSTITUTION}, ENROLMENT_COUNTERS)
"""`home_provider_counts` summed over providers: one row per (year, home institution)."""

BILLING_SIDES = ("as_provider", "as_home")
"""`institution_billing_counts.side`: the institution as payee (provider) or as payer (home)."""

institution_billing_counts = _yearly(
    "institution_billing_counts",
    {"institution_id": INSTITUTION, "side": 11},
    (*BILLING_COUNTERS, *DOCUMENT_COUNTERS),
    sa.Index("ix_institution_billing_counts_institution", "institution_id", "academic_year"),
)
"""`billing_counts` and `document_counts` summed per (year, institution, side): as payee, as payer."""


def _summed(query: sa.Select[Any], columns: tuple[str, ...], source: sa.FromClause) -> sa.Select[Any]:
    return query.add_columns(*(sa.func.sum(source.c[name]).label(name) for name in columns))


def _enrolment_rollup(key: str) -> sa.Select[Any]:
    pairs = home_provider_counts
    keys = (pairs.c.academic_year, pairs.c[key])
    return _summed(sa.select(*keys), ENROLMENT_COUNTERS, pairs).group_by(*keys)


def _billing_rollup() -> sa.Select[Any]:
    measures = (*BILLING_COUNTERS, *DOCUMENT_COUNTERS)
    parts = []
    for side, party in zip(BILLING_SIDES, ("payee_id", "payer_id"), strict=True):
        for table in (billing_counts, document_counts):
            values = (table.c[n] if n in table.c else sa.literal(0, sa.BigInteger) for n in measures)
            parts.append(
                sa.select(
                    table.c.academic_year,
                    table.c[party].label("institution_id"),
                    sa.literal(side, sa.String).label("side"),
                    *(value.label(name) for value, name in zip(values, measures, strict=True)),
                )
            )
    rows = sa.union_all(*parts).subquery("sides")
    keys = (rows.c.academic_year, rows.c.institution_id, rows.c.side)
    return _summed(sa.select(*keys), measures, rows).group_by(*keys)


ROLLUPS: dict[sa.Table, sa.Select[Any]] = {
    provider_counts: _enrolment_rollup("provider_id"),
    home_counts: _enrolment_rollup("home_institution_id"),
    institution_billing_counts: _billing_rollup(),
}
"""Each roll-up table and the query that derives its rows from the pair tables (columns in table order)."""


def fill_rollups() -> list[sa.Insert]:
    """Statements that fill the (empty) roll-up tables from the pair tables."""
    return [table.insert().from_select(list(table.c.keys()), query) for table, query in ROLLUPS.items()]


read_model_generation = sa.Table(
    "read_model_generation",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("generation", sa.BigInteger, nullable=False),
)
"""One row (id 1), raised in the same transaction as every change to the read models."""

ENROLMENT_COUNT_TABLES = (offering_counts, offering_home_counts, home_provider_counts)
READ_MODELS = (
    institutions,
    offerings,
    enrolment_states,
    commitment_states,
    invoices,
    credit_notes,
    *ENROLMENT_COUNT_TABLES,
    billing_counts,
    document_counts,
    *ROLLUPS,
    projection_state,
)
"""Everything `rebuild` clears and projects again from `event_store`."""

inbox = add_inbox_table(metadata)
