"""Report queries over the read models.

Every report reads counter rows (whose number depends on the catalogue and the institutions, not on
the number of enrolments; per institution or per year the roll-ups, whose rows do not even grow as
enrolments spread over more institution pairs) plus the small reference tables; only the follow-up
list reads per-enrolment rows, through an index on (home institution, follow-up flag, year). JSON
answers are paginated; `page=None` returns every row (CSV and XLSX exports).

Institution scope (`scope=`, set by the HTTP layer for counsellors, provider staff and finance): a
school's staff see only the figures of enrolments and commitments *their institution is a party to*,
as the provider of the offering or as the home institution of the student (payee or payer of a
commitment). Every counter row is keyed by such a pair, so the scope is one condition on the pair
tables, applied before any filter or grouping; the same `Report` feeds JSON, CSV and XLSX, so every
format shows the same rows. Filters narrow within the scope and never widen it: `provider=` naming
another institution shows only the caller's own students in that institution's offerings, and a
filter matching nothing the caller is party to yields no rows. `scope=None` is the whole network.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from services.reporting import domain
from services.reporting.export import Column, Report
from services.reporting.tables import (
    billing_counts,
    credit_notes,
    document_counts,
    enrolment_states,
    home_counts,
    home_provider_counts,
    institution_billing_counts,
    institutions,
    invoices,
    offering_counts,
    offering_home_counts,
    offerings,
    provider_counts,
)
from shared.errors import Invalid, NotFound
from shared.http import Page

PARTICIPANT_GROUPS = ("offering", "home_institution")
COMPLETION_GROUPS = ("offering", "provider", "home_institution", "subject", "academic_year")
SUPPLY_DIMENSIONS = ("subject", "level", "region", "academic_year", "period")
MEASURES = ("offerings", "cancelled_offerings", "seats", "requests", "held", "waitlisted", "under_minimum")
SUPPLY_DEFAULT = ("subject", "level", "region", "academic_year")
NAMES_NOTE = (
    "Students appear by their pseudonymous student_ref only: personal data stays in the enrolment service. "
    "Names are resolved from /api/enrolments/{enrolment_id}, for this institution's staff."
)
PARTICIPANT_COLUMNS = (
    Column("held", "int"),
    Column("awaiting_commitment", "int"),
    Column("confirmed", "int"),
    Column("waitlisted", "int"),
    Column("rejected", "int"),
    Column("withdrawn", "int"),
    Column("withdrawn_late", "int"),
    Column("cancelled", "int"),
    Column("completed", "int"),
)
COMPLETION_COLUMNS = (
    Column("enrolments", "int"),
    Column("passed", "int"),
    Column("failed", "int"),
    Column("interrupted", "int"),
    Column("completed", "int"),
    Column("completion_rate", "rate"),
    Column("credits_earned", "decimal"),
)
MONEY_SIDE = (
    ("commitments", "int"),
    ("pending", "money"),
    ("pending_count", "int"),
    ("committed", "money"),
    ("committed_count", "int"),
    ("chargeable", "money"),
    ("chargeable_count", "int"),
    ("invoiced", "money"),
    ("invoice_count", "int"),
    ("credited", "money"),
    ("credit_note_count", "int"),
    ("voided", "money"),
    ("voided_count", "int"),
    ("rejected_count", "int"),
)


@dataclass(frozen=True)
class Filters:
    academic_year: str | None = None
    provider: str | None = None
    offering_id: str | None = None
    home_institution: str | None = None
    subject: str | None = None
    level: str | None = None
    region: str | None = None
    period: str | None = None

    def given(self) -> dict[str, str]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def _stem(*parts: str | None) -> str:
    text = "-".join(p for p in parts if p)
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


def _year_part(year: str | None) -> str:
    return year or "all-years"


def _paged(query: sa.Select[Any], page: Page | None) -> sa.Select[Any]:
    return query if page is None else query.limit(page.page_size).offset(page.offset)


def _page_meta(total: int, page: Page | None, count: int) -> dict[str, int]:
    if page is None:
        return {"total": total, "page": 1, "page_size": max(count, 1)}
    return {"total": total, "page": page.page, "page_size": page.page_size}


ZERO = sa.literal_column("0", sa.BigInteger)
ONE = sa.literal_column("1", sa.BigInteger)
"""Constants written into a statement's text, not bound. Where an aggregate is repeated in a window
(`_page_and_sums`), SQLite and PostgreSQL compute it once only if both are the same expression, and two
bound parameters never are (`?` 3 is not `?` 9), even when they carry the same value."""


def _text_constant(value: str) -> sa.ColumnElement[str]:
    """A code-defined word (a status) written into the statement's text; see ZERO."""
    if not re.fullmatch(r"[a-z_]+", value):
        raise ValueError(f"not a plain word: {value!r}")
    return sa.literal_column(f"'{value}'", sa.String)


def _sums(table: sa.FromClause) -> list[sa.ColumnElement[Any]]:
    return [sa.func.coalesce(sa.func.sum(table.c[name]), ZERO).label(name) for name in domain.ENROLMENT_COUNTERS]


def _counts(row: Any) -> dict[str, int]:
    mapping = row._mapping
    return {name: int(mapping[name] or 0) for name in domain.ENROLMENT_COUNTERS}


@dataclass(frozen=True)
class _Page:
    rows: Sequence[Any]
    total: int
    """Rows over every page."""
    sums: dict[str, int]
    """Each measure summed over every page's rows."""


async def _page_and_sums(
    conn: AsyncConnection, query: sa.Select[Any], page: Page | None, measures: Sequence[str]
) -> _Page:
    """One page of `query`, the number of its rows and the sums of its `measures` columns over every page,
    in one statement: window functions over the whole result, which SQL computes before LIMIT/OFFSET.

    Only a page past the end (no row to carry the windows) asks again, with one more statement.
    """
    selected = query.selected_columns
    windowed = query.add_columns(
        sa.func.count().over().label("_rows"), *(sa.func.sum(selected[m]).over().label(f"_sum_{m}") for m in measures)
    )
    rows = (await conn.execute(_paged(windowed, page))).all()
    if rows:
        first = rows[0]._mapping
        return _Page(rows, int(first["_rows"]), {m: int(first[f"_sum_{m}"] or 0) for m in measures})
    if page is None or page.offset == 0:
        return _Page(rows, 0, dict.fromkeys(measures, 0))
    whole = query.order_by(None).subquery()
    again = sa.select(sa.func.count(), *(sa.func.sum(whole.c[m]) for m in measures))
    total, *sums = (await conn.execute(again)).one()
    return _Page(rows, int(total), {m: int(v or 0) for m, v in zip(measures, sums, strict=True)})


async def _institution_names(conn: AsyncConnection, ids: Sequence[str]) -> dict[str, str]:
    if not ids:
        return {}
    rows = await conn.execute(sa.select(institutions.c.id, institutions.c.name).where(institutions.c.id.in_(ids)))
    return {row.id: row.name for row in rows}


def _enrolment_filters(table: sa.FromClause, f: Filters) -> list[sa.ColumnElement[bool]]:
    where: list[sa.ColumnElement[bool]] = []
    if f.academic_year:
        where.append(table.c.academic_year == f.academic_year)
    if f.provider:
        where.append(table.c.provider_id == f.provider)
    if f.offering_id is not None and "offering_id" in table.c:
        where.append(table.c.offering_id == f.offering_id)
    if f.home_institution is not None and "home_institution_id" in table.c:
        where.append(table.c.home_institution_id == f.home_institution)
    return where


def _counter_table(*, offering: bool, home: bool, provider: bool) -> sa.Table:
    """The smallest counter table that has the dimensions a report needs: per offering (the provider comes
    with it), per institution pair, or per provider or home institution alone (a roll-up of the pairs)."""
    if offering:
        return offering_home_counts if home else offering_counts
    if home and provider:
        return home_provider_counts
    return home_counts if home else provider_counts


def _one_row_per_key(src: sa.FromClause, key_name: str, f: Filters) -> bool:
    """Whether `src` holds at most one row per value of `key_name` under the filters `f`: a counter table
    whose primary key is that column and columns `_enrolment_filters` fixes to one value."""
    if not isinstance(src, sa.Table):
        return False
    fixed = {
        column
        for column, given in (
            ("academic_year", bool(f.academic_year)),
            ("provider_id", bool(f.provider)),
            ("offering_id", f.offering_id is not None),
            ("home_institution_id", f.home_institution is not None),
        )
        if given
    }
    return set(src.primary_key.columns.keys()) - fixed == {key_name}


def _party(table: sa.FromClause, scope: str) -> sa.ColumnElement[bool]:
    """Counter rows of enrolments `scope` is a party to: as the offering's provider or as the home institution."""
    return sa.or_(table.c.provider_id == scope, table.c.home_institution_id == scope)


def _counter_source(*, offering: bool, home: bool, provider: bool, scope: str | None) -> sa.FromClause:
    """The counters a report reads: the smallest table with its dimensions (`provider`: whether it needs the
    provider without the offering), or, for an institution's staff, only the figures of enrolments that
    institution is a party to (see the module docstring).

    Scoped, the rows come from a pair table (provider × home institution) so the party condition applies
    before anything is summed; per offering without the home dimension, each offering's row is then the
    sum of the caller's part of it: the whole offering for its provider, the caller's students otherwise.
    """
    if scope is None:
        return _counter_table(offering=offering, home=home, provider=provider)
    pairs = offering_home_counts if offering else home_provider_counts
    if home or not offering:
        return sa.select(pairs).where(_party(pairs, scope)).subquery("scoped")
    keys = [pairs.c.offering_id, pairs.c.provider_id, pairs.c.academic_year]
    sums = [sa.func.sum(pairs.c[name]).label(name) for name in domain.ENROLMENT_COUNTERS]
    return sa.select(*keys, *sums).where(_party(pairs, scope)).group_by(*keys).subquery("scoped")


# --- participants ---------------------------------------------------------------------------------


async def participants(
    conn: AsyncConnection, f: Filters, group_by: str, page: Page | None, *, scope: str | None = None
) -> Report:
    """Per offering: seats, held, counts by status, and by home institution; or per home institution.

    Scoped to an institution (module docstring): per offering, the offerings it provides with every
    participant, and other institutions' offerings with its own students only (`by_home_institution`
    then lists only it); per home institution, see `_participants_by_home`.
    """
    domain.check_academic_year(f.academic_year)
    if group_by not in PARTICIPANT_GROUPS:
        raise Invalid(f"group_by {group_by!r} is not one of {', '.join(PARTICIPANT_GROUPS)}.")
    if group_by == "home_institution":
        return await _participants_by_home(conn, f, page, scope)
    src = _counter_source(offering=True, home=f.home_institution is not None, provider=True, scope=scope)
    where = _enrolment_filters(src, f)
    joined = src.outerjoin(offerings, offerings.c.id == src.c.offering_id)
    query = (
        sa.select(
            src.c.offering_id,
            src.c.provider_id,
            src.c.academic_year,
            offerings.c.title,
            offerings.c.status,
            offerings.c.max_participants,
            offerings.c.min_participants,
            *[src.c[name] for name in domain.ENROLMENT_COUNTERS],
        )
        .select_from(joined)
        .where(*where)
        .order_by(src.c.academic_year, src.c.provider_id, sa.func.coalesce(offerings.c.title, ""), src.c.offering_id)
    )
    # Two statements rather than window totals: the page is a top-N sort, the totals a scan of the counters
    # alone; windows would carry every joined row through the sort (twice the CPU on SQLite).
    rows = (await conn.execute(_paged(query, page))).all()
    totals_row = (await conn.execute(sa.select(sa.func.count().label("rows"), *_sums(src)).where(*where))).one()
    total = int(totals_row.rows)  # one row per offering in either counter table under these filters
    totals = _counts(totals_row)

    breakdown: dict[str, dict[str, dict[str, int]]] = defaultdict(dict)
    if rows:
        pairs = offering_home_counts
        if page is None:  # an export: every pair under the same filters
            pair_where = _enrolment_filters(pairs, f)
        else:  # this page's offerings, by the primary key
            pair_where = [pairs.c.offering_id.in_([row.offering_id for row in rows])]
            if f.home_institution is not None:
                pair_where.append(pairs.c.home_institution_id == f.home_institution)
        if scope is not None:
            pair_where.append(_party(pairs, scope))
        wanted = [pairs.c.offering_id, pairs.c.home_institution_id, *(pairs.c[n] for n in domain.PARTICIPANT_COUNTERS)]
        pair_rows = await conn.execute(
            sa.select(*wanted).where(*pair_where).order_by(pairs.c.offering_id, pairs.c.home_institution_id)
        )
        for offering_id, home, *pair_counts in pair_rows:
            breakdown[offering_id][home] = domain.participant_row_of(pair_counts)

    items = []
    for row in rows:
        counts = _counts(row)
        items.append(
            {
                "offering_id": row.offering_id,
                "title": row.title,
                "provider_id": row.provider_id,
                "academic_year": row.academic_year,
                "status": row.status,
                "seats": row.max_participants,
                "max_participants": row.max_participants,
                "min_participants": row.min_participants,
                **domain.participant_row(counts),
                "requests": counts["requests"],
                "by_home_institution": breakdown.get(row.offering_id, {}),
            }
        )
    body = {
        "report": "participants",
        "group_by": "offering",
        "academic_year": f.academic_year,
        "filters": f.given(),
        "scope": scope,
        "totals": {**domain.participant_row(totals), "requests": totals["requests"]},
        **_page_meta(total, page, len(items)),
        "items": items,
    }
    columns = (
        Column("offering_id"),
        Column("title"),
        Column("provider_id"),
        Column("academic_year"),
        Column("status"),
        Column("seats", "int"),
        Column("min_participants", "int"),
        *PARTICIPANT_COLUMNS,
        Column("requests", "int"),
        Column("by_home_institution", "breakdown"),
    )
    return Report("participants", body, columns, items, _stem("participants", _year_part(f.academic_year)))


async def _participants_by_home(conn: AsyncConnection, f: Filters, page: Page | None, scope: str | None) -> Report:
    """Per home institution: its students in *other* institutions' courses.

    Scoped to an institution: its own line (its students in every other institution's courses), and a
    line per other home institution counting only that institution's students in the scope's courses.
    """
    # by provider too: it leaves out each home institution's own courses and counts the providers
    src = _counter_source(offering=f.offering_id is not None, home=True, provider=True, scope=scope)
    where = [*_enrolment_filters(src, f), src.c.provider_id != src.c.home_institution_id]
    home = src.c.home_institution_id
    query = (
        sa.select(home.label("home_institution_id"), sa.func.count(sa.distinct(src.c.provider_id)).label("providers"))
        .add_columns(*_sums(src))
        .where(*where)
        .group_by(home)
        .order_by(home)
    )
    found = await _page_and_sums(conn, query, page, domain.ENROLMENT_COUNTERS)
    rows, total, totals = found.rows, found.total, found.sums
    names = await _institution_names(conn, [row.home_institution_id for row in rows])
    items = [
        {
            "home_institution_id": row.home_institution_id,
            "name": names.get(row.home_institution_id),
            "providers": int(row.providers),
            **domain.participant_row(_counts(row)),
            "requests": _counts(row)["requests"],
        }
        for row in rows
    ]
    body = {
        "report": "participants",
        "group_by": "home_institution",
        "academic_year": f.academic_year,
        "filters": f.given(),
        "scope": scope,
        "totals": {**domain.participant_row(totals), "requests": totals["requests"]},
        **_page_meta(total, page, len(items)),
        "items": items,
    }
    columns = (
        Column("home_institution_id"),
        Column("name"),
        Column("providers", "int"),
        *PARTICIPANT_COLUMNS,
        Column("requests", "int"),
    )
    stem = _stem("participants-by-home-institution", _year_part(f.academic_year))
    return Report("participants", body, columns, items, stem)


# --- completions ----------------------------------------------------------------------------------


async def completions(
    conn: AsyncConnection, f: Filters, group_by: str, page: Page | None, *, scope: str | None = None
) -> Report:
    """Passed / failed / interrupted, completion rate and credits earned, grouped by one dimension.

    Aggregates only: counts per offering, institution, subject or year, never a student. Scoped to an
    institution (module docstring), every line counts only the enrolments it is a party to: per offering,
    its own offerings in full and its students in others'; per provider, itself in full and its students
    at other providers; per home institution, its own students everywhere and other institutions'
    students in its courses; per subject and year, the sum of those.
    """
    domain.check_academic_year(f.academic_year)
    if group_by not in COMPLETION_GROUPS:
        raise Invalid(f"group_by {group_by!r} is not one of {', '.join(COMPLETION_GROUPS)}.")
    needs_offering = group_by in ("offering", "subject") or f.offering_id is not None or f.subject is not None
    needs_home = group_by == "home_institution" or f.home_institution is not None
    needs_provider = group_by == "provider" or f.provider is not None
    src = _counter_source(offering=needs_offering, home=needs_home, provider=needs_provider, scope=scope)
    where = _enrolment_filters(src, f)
    source: sa.FromClause = src
    if group_by == "subject" or f.subject is not None:
        source = src.outerjoin(offerings, offerings.c.id == src.c.offering_id)
        if f.subject is not None:
            where.append(offerings.c.subject == f.subject)
    key_name = {
        "offering": "offering_id",
        "provider": "provider_id",
        "home_institution": "home_institution_id",
        "subject": "subject",
        "academic_year": "academic_year",
    }[group_by]
    key_column = offerings.c.subject if group_by == "subject" else src.c[key_name]
    sort_key = sa.func.coalesce(key_column, "")
    if _one_row_per_key(src, key_name, f):
        # Each group is one counter row already: read the rows as they are. Grouping them anyway costs
        # PostgreSQL three times as much (12 sums per row: 5.4 → 1.9 ms per year of 2,500 offerings).
        query = (
            sa.select(key_column.label("key"), *(src.c[name] for name in domain.ENROLMENT_COUNTERS))
            .select_from(source)
            .where(*where, src.c.requests > 0)
            .order_by(sort_key)
        )
    else:
        query = (
            sa.select(key_column.label("key"))
            .add_columns(*_sums(src))
            .select_from(source)
            .where(*where)
            .group_by(key_column)
            .having(sa.func.sum(src.c.requests) > 0)
            .order_by(sort_key)
        )
    # Groups left out (no request) have no enrolment, so every counter of theirs is zero: the sums over the
    # groups shown are the totals over every row.
    found = await _page_and_sums(conn, query, page, domain.ENROLMENT_COUNTERS)
    rows, total, totals = found.rows, found.total, found.sums

    keys = [row.key for row in rows]
    labels: dict[str, Any] = {}
    if group_by in ("provider", "home_institution"):
        labels = await _institution_names(conn, keys)
    elif group_by == "offering" and keys:
        info = await conn.execute(
            sa.select(offerings.c.id, offerings.c.title, offerings.c.subject).where(offerings.c.id.in_(keys))
        )
        labels = {row.id: row for row in info}
    items = []
    for row in rows:
        item: dict[str, Any] = {key_name: row.key}
        if group_by == "offering":
            info_row = labels.get(row.key)
            item["title"] = info_row.title if info_row else None
            item["subject"] = info_row.subject if info_row else None
        elif group_by in ("provider", "home_institution"):
            item["name"] = labels.get(row.key)
        item.update(domain.completion_row(_counts(row)))
        items.append(item)
    body = {
        "report": "completions",
        "group_by": group_by,
        "academic_year": f.academic_year,
        "filters": f.given(),
        "scope": scope,
        "totals": domain.completion_row(totals),
        **_page_meta(total, page, len(items)),
        "items": items,
    }
    label_columns: tuple[Column, ...] = ()
    if group_by == "offering":
        label_columns = (Column("title"), Column("subject"))
    elif group_by in ("provider", "home_institution"):
        label_columns = (Column("name"),)
    columns = (Column(key_name), *label_columns, *COMPLETION_COLUMNS)
    stem = _stem("completions-by", group_by.replace("_", "-"), _year_part(f.academic_year))
    return Report("completions", body, columns, items, stem)


# --- billing --------------------------------------------------------------------------------------


def _period_bounds(period_start: date | None, period_end: date | None) -> tuple[datetime | None, datetime | None]:
    if period_start and period_end and period_end < period_start:
        raise Invalid(f"period_end {period_end} is before period_start {period_start}.")
    start = datetime.combine(period_start, time(), UTC) if period_start else None
    end = datetime.combine(period_end + timedelta(days=1), time(), UTC) if period_end else None
    return start, end


BILLING_MEASURES = (*domain.BILLING_COUNTERS, *domain.DOCUMENT_COUNTERS)


Source = tuple[sa.Table, dict[str, sa.ColumnElement[Any]], list[sa.ColumnElement[bool]]]


def _billing_sources(year: str | None, bounds: tuple[datetime | None, datetime | None]) -> list[Source]:
    """Where each billing measure comes from: (table, measure → value per row, conditions).

    Commitments from their (year, payee, payer) counters; invoices and credit notes from theirs
    (`document_counts`), or, for a period, from the documents issued in it, one row each.
    """

    def of_year(table: sa.Table) -> list[sa.ColumnElement[bool]]:
        return [table.c.academic_year == year] if year else []

    commitments: dict[str, sa.ColumnElement[Any]] = {n: billing_counts.c[n] for n in domain.BILLING_COUNTERS}
    sources: list[Source] = [(billing_counts, commitments, of_year(billing_counts))]
    if bounds == (None, None):
        counters: dict[str, sa.ColumnElement[Any]] = {n: document_counts.c[n] for n in domain.DOCUMENT_COUNTERS}
        sources.append((document_counts, counters, of_year(document_counts)))
        return sources
    for table, count_key, cents_key in (
        (invoices, "invoice_count", "invoiced_cents"),
        (credit_notes, "credit_note_count", "credited_cents"),
    ):
        where = of_year(table)
        if bounds[0] is not None:
            where.append(table.c.issued_at >= bounds[0])
        if bounds[1] is not None:
            where.append(table.c.issued_at < bounds[1])
        # Sum raw integer cents: `total` is a Cents column, and the sum must stay an exact integer.
        sources.append((table, {count_key: ONE, cents_key: sa.type_coerce(table.c.total, sa.BigInteger)}, where))
    return sources


async def _billing_sides(
    conn: AsyncConnection,
    year: str | None,
    bounds: tuple[datetime | None, datetime | None],
    institution: str | None,
    nothing: Sequence[sa.ColumnElement[bool]],
) -> tuple[dict[str, dict[str, dict[str, int]]], dict[str, int]]:
    """Sums per payee (`as_provider`) and per payer (`as_home`), and the totals, in one statement.

    Without a period both sides come from the per-institution roll-up (`institution_billing_counts`); for
    a period, from the pair counters of commitments and the documents issued in it. Each reads its rows
    through an index (the year's rows, or one institution's), never the same rows twice: the totals are
    the sum of every payee's line, or for one institution its two sides less the rows where it is both
    payee and payer (its own students in its own courses, from the pair tables), counted in each.
    """

    def part(
        side: str, key: Any, values: dict[str, sa.ColumnElement[Any]], where: list[sa.ColumnElement[bool]]
    ) -> sa.Select[Any]:
        columns = [(sa.func.sum(values[n]) if n in values else ZERO).label(n) for n in BILLING_MEASURES]
        query = sa.select(sa.literal(side).label("side"), key.label("institution"), *columns)
        return query.where(*nothing, *where).group_by(key)

    mine = institution is not None
    parts = []
    if bounds == (None, None):
        # Both sides from the per-institution roll-up: one row per (year, institution, side), however many
        # pairs of institutions there are.
        rolled = institution_billing_counts
        where = [rolled.c.academic_year == year] if year else []
        if mine:
            where.append(rolled.c.institution_id == institution)
        keys = (rolled.c.side, rolled.c.institution_id)
        summed = (sa.func.sum(rolled.c[n]).label(n) for n in BILLING_MEASURES)
        parts.append(sa.select(*keys, *summed).where(*nothing, *where).group_by(*keys))
    for table, measures, where in _billing_sources(year, bounds):
        payee, payer = table.c.payee_id, table.c.payer_id
        if bounds != (None, None):
            parts.append(part("as_provider", payee, measures, [*where, *([payee == institution] if mine else [])]))
            parts.append(part("as_home", payer, measures, [*where, *([payer == institution] if mine else [])]))
        if mine:
            parts.append(part("self", payee, measures, [*where, payee == institution, payer == institution]))
    sides: dict[str, dict[str, dict[str, int]]] = defaultdict(lambda: {"as_provider": {}, "as_home": {}})
    both: dict[str, int] = dict.fromkeys(BILLING_MEASURES, 0)
    for side, inst, *sums in await conn.execute(sa.union_all(*parts)):
        if side == "self":
            for name, value in zip(BILLING_MEASURES, sums, strict=True):
                both[name] += int(value or 0)
            continue
        line = sides[inst][side]
        for name, value in zip(BILLING_MEASURES, sums, strict=True):
            line[name] = line.get(name, 0) + int(value or 0)
    totals = dict.fromkeys(BILLING_MEASURES, 0)
    if institution is None:
        for lines in sides.values():
            for name, value in lines["as_provider"].items():
                totals[name] += value
    elif institution in sides:
        own = sides[institution]
        for name in BILLING_MEASURES:
            totals[name] = own["as_provider"].get(name, 0) + own["as_home"].get(name, 0) - both[name]
    return sides, totals


async def billing(
    conn: AsyncConnection,
    f: Filters,
    institution: str | None,
    period_start: date | None,
    period_end: date | None,
    page: Page | None,
    *,
    scope: str | None = None,
) -> Report:
    """Per institution: owed to it (as provider) and owed by it (as home); money exact to the cent.

    Reads the per-(year, institution, side) roll-up of the counters of commitments, invoices and credit
    notes (or, for a period, the (year, payee, payer) commitment counters and the documents issued in
    it), summed in SQL per side in one statement: the answer's cost depends on the number of
    institutions (for a period, of institution pairs and documents), not of commitments.

    Scoped to an institution (its finance staff): only its own line, and totals over the commitments,
    invoices and credit notes it is payee or payer of, exactly as `institution=` that institution; an
    `institution=` naming another one yields no line and zero totals.
    """
    domain.check_academic_year(f.academic_year)
    bounds = _period_bounds(period_start, period_end)
    asked = institution
    nothing: list[sa.ColumnElement[bool]] = []
    if scope is not None:
        if institution is not None and institution != scope:
            nothing = [sa.false()]
        institution = scope
    sides, totals = await _billing_sides(conn, f.academic_year, bounds, institution, nothing)
    ids = sorted(sides)
    total = len(ids)
    if page is not None:
        ids = ids[page.offset : page.offset + page.page_size]
    names = await _institution_names(conn, ids)
    items = [
        {
            "institution_id": inst,
            "name": names.get(inst),
            "as_provider": domain.billing_side(sides[inst]["as_provider"]),
            "as_home": domain.billing_side(sides[inst]["as_home"]),
        }
        for inst in ids
    ]
    filters = {**f.given(), **({"institution": asked} if asked else {})}
    if period_start:
        filters["period_start"] = period_start.isoformat()
    if period_end:
        filters["period_end"] = period_end.isoformat()
    body = {
        "report": "billing",
        "academic_year": f.academic_year,
        "filters": filters,
        "scope": scope,
        "notes": (
            "Commitments count in the academic year of their enrolment; invoices and credit notes in the year and "
            "period (UTC dates) in which they were issued."
        ),
        "totals": domain.billing_side(totals),
        **_page_meta(total, page, len(items)),
        "items": items,
    }
    columns = (
        Column("institution_id"),
        Column("name"),
        *(Column(f"as_provider.{key}", kind) for key, kind in MONEY_SIDE),  # type: ignore[arg-type]
        *(Column(f"as_home.{key}", kind) for key, kind in MONEY_SIDE),  # type: ignore[arg-type]
    )
    stem = _stem("billing", asked or scope, _year_part(f.academic_year))
    return Report("billing", body, columns, items, stem)


# --- supply and demand ----------------------------------------------------------------------------


def parse_dimensions(group_by: str | None) -> tuple[str, ...]:
    if not group_by:
        return SUPPLY_DEFAULT
    chosen = tuple(dict.fromkeys(part.strip() for part in group_by.split(",") if part.strip()))
    unknown = [d for d in chosen if d not in SUPPLY_DIMENSIONS]
    if unknown or not chosen:
        raise Invalid(f"group_by {group_by!r}: choose one or more of {', '.join(SUPPLY_DIMENSIONS)}, comma-separated.")
    return chosen


async def supply_demand(conn: AsyncConnection, f: Filters, group_by: str | None, page: Page | None) -> Report:
    """Per subject, level, region (the provider's), academic year and period (start month)."""
    domain.check_academic_year(f.academic_year)
    dims = parse_dimensions(group_by)
    region = sa.func.coalesce(institutions.c.region, offerings.c.region)
    dimension = {
        "subject": offerings.c.subject,
        "level": offerings.c.level,
        "region": region,
        "academic_year": offerings.c.academic_year,
        "period": offerings.c.period,
    }
    # Every constant is written into the text (ZERO, ONE, _text_constant): the totals repeat each
    # measure in a window, and only then is each computed once per group (SQLite statement at 10,000: 14.5 -> 12.4 ms).
    active = offerings.c.status != _text_constant("cancelled")
    held = sum((sa.func.coalesce(offering_counts.c[status], ZERO) for status in domain.HOLDING_SEAT), ZERO)
    at_risk_status = offerings.c.status.in_([_text_constant(s) for s in domain.AT_RISK_STATUSES])
    at_risk = sa.and_(at_risk_status, held < offerings.c.min_participants)

    def when(condition: sa.ColumnElement[bool], value: Any) -> sa.ColumnElement[Any]:
        return sa.func.coalesce(sa.func.sum(sa.case((condition, value), else_=ZERO)), ZERO)

    measures = [
        when(active, ONE).label("offerings"),
        when(sa.not_(active), ONE).label("cancelled_offerings"),
        when(active, offerings.c.max_participants).label("seats"),
        sa.func.coalesce(sa.func.sum(offering_counts.c.requests), ZERO).label("requests"),
        when(active, held).label("held"),
        when(active, sa.func.coalesce(offering_counts.c.waitlisted, ZERO)).label("waitlisted"),
        when(at_risk, ONE).label("under_minimum"),
    ]
    source = offerings.outerjoin(offering_counts, offering_counts.c.offering_id == offerings.c.id).outerjoin(
        institutions, institutions.c.id == offerings.c.provider_id
    )
    where: list[sa.ColumnElement[bool]] = [offerings.c.info_version > ZERO]
    for name, value in (
        ("academic_year", f.academic_year),
        ("subject", f.subject),
        ("level", f.level),
        ("region", f.region),
        ("period", f.period),
    ):
        if value is not None:
            where.append(dimension[name] == value)
    if f.provider is not None:
        where.append(offerings.c.provider_id == f.provider)
    keys = [dimension[d].label(d) for d in dims]
    grouping = [dimension[d] for d in dims]
    query = (
        sa.select(*keys, *measures)
        .select_from(source)
        .where(*where)
        .group_by(*grouping)
        .order_by(*(sa.func.coalesce(g, "") for g in grouping))
    )
    found = await _page_and_sums(conn, query, page, MEASURES)
    rows, total = found.rows, found.total

    def line(values: Any) -> dict[str, Any]:
        m = {name: int(values[name] or 0) for name in MEASURES}
        return {
            "offerings": m["offerings"],
            "seats": m["seats"],
            "requests": m["requests"],
            "held": m["held"],
            "fill_rate": domain.rate(m["held"], m["seats"]),
            "waitlisted": m["waitlisted"],
            "under_minimum": m["under_minimum"],
            "cancelled_offerings": m["cancelled_offerings"],
        }

    items = [{**{d: row._mapping[d] for d in dims}, **line(row._mapping)} for row in rows]
    body = {
        "report": "supply-demand",
        "group_by": list(dims),
        "academic_year": f.academic_year,
        "filters": f.given(),
        "notes": (
            "offerings and seats count published offerings that are not cancelled; requests count every enrolment "
            "ever made (waitlisted ones too); waitlisted is the unmet demand now; under_minimum counts open "
            "offerings holding fewer seats than their min_participants (at risk of cancellation)."
        ),
        "totals": line(found.sums),
        **_page_meta(total, page, len(items)),
        "items": items,
    }
    columns = (
        *(Column(d) for d in dims),
        Column("offerings", "int"),
        Column("seats", "int"),
        Column("requests", "int"),
        Column("held", "int"),
        Column("fill_rate", "rate"),
        Column("waitlisted", "int"),
        Column("under_minimum", "int"),
        Column("cancelled_offerings", "int"),
    )
    return Report("supply-demand", body, columns, items, _stem("supply-demand", _year_part(f.academic_year)))


# --- follow-up ------------------------------------------------------------------------------------


def follow_up_list(institution_id: str, f: Filters) -> tuple[sa.Select[Any], list[sa.ColumnElement[bool]]]:
    """The follow-up rows, newest first and ties by enrolment id (descending too): the order of the index
    `ix_enrolment_states_follow_up` read backwards, so a page reads its own rows and sorts nothing. Also
    the conditions, for the count."""
    es = enrolment_states
    where = [es.c.home_institution_id == institution_id, es.c.follow_up == sa.true()]
    if f.academic_year:
        where.append(es.c.academic_year == f.academic_year)
    if f.provider:
        where.append(es.c.provider_id == f.provider)
    query = (
        sa.select(es, offerings.c.title)
        .select_from(es.outerjoin(offerings, offerings.c.id == es.c.offering_id))
        .where(*where)
        .order_by(es.c.status_at.desc(), es.c.enrolment_id.desc())
    )
    return query, where


async def follow_up(conn: AsyncConnection, institution_id: str, f: Filters, page: Page | None) -> Report:
    """A home institution's failed, interrupted and late-withdrawn enrolments, newest first."""
    domain.check_academic_year(f.academic_year)
    es = enrolment_states
    query, where = follow_up_list(institution_id, f)
    # The count apart: it reads the index alone, where a window would read every follow-up row in full.
    rows = (await conn.execute(_paged(query, page))).all()
    total = int((await conn.execute(sa.select(sa.func.count()).select_from(es).where(*where))).scalar_one())
    if total == 0:
        known = (await conn.execute(sa.select(institutions.c.id).where(institutions.c.id == institution_id))).first()
        has_students = (
            await conn.execute(sa.select(es.c.enrolment_id).where(es.c.home_institution_id == institution_id).limit(1))
        ).first()
        if known is None and has_students is None:
            raise NotFound(
                f"Institution {institution_id!r} is not known to reporting: no institution event and no enrolment "
                "of its students has arrived. Check the id (a slug such as `sakky`)."
            )
    items = [
        {
            "enrolment_id": row.enrolment_id,
            "student_ref": row.student_ref,
            "offering_id": row.offering_id,
            "offering_title": row.title,
            "provider_id": row.provider_id,
            "academic_year": row.academic_year,
            "status": row.status,
            "reason": "late_withdrawal" if row.status == "withdrawn" else row.status,
            "late": row.late,
            "grade": row.grade,
            "date": row.status_at.date().isoformat(),
            "enrolment_url": f"/api/enrolments/{row.enrolment_id}",
        }
        for row in rows
    ]
    body = {
        "report": "follow-up",
        "institution_id": institution_id,
        "academic_year": f.academic_year,
        "filters": f.given(),
        "personal_data": NAMES_NOTE,
        **_page_meta(total, page, len(items)),
        "items": items,
    }
    columns = (
        Column("enrolment_id"),
        Column("student_ref"),
        Column("offering_id"),
        Column("offering_title"),
        Column("provider_id"),
        Column("academic_year"),
        Column("status"),
        Column("reason"),
        Column("late", "bool"),
        Column("grade"),
        Column("date", "date"),
        Column("enrolment_url"),
    )
    stem = _stem("follow-up", institution_id, _year_part(f.academic_year))
    return Report("follow-up", body, columns, items, stem)
