"""Read queries for billing GET endpoints (and the few reads the handlers share)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from services.billing import domain
from services.billing.einvoice import Party
from services.billing.tables import commitments, institutions, invoice_lines, invoices, policies
from shared.errors import NotFound

_FIELDS = (
    "id",
    "enrolment_id",
    "offering_id",
    "payer_id",
    "payee_id",
    "amount",
    "price_kind",
    "academic_year",
    "status",
    "decided_by",
    "reason",
    "free_cancellation_deadline",
    "charge_percent",
    "chargeable_amount",
    "chargeable_on",
    "voided_on",
    "version",
    "created_at",
    "updated_at",
)


def commitment_dict(row: sa.Row[Any]) -> dict[str, Any]:
    return {name: getattr(row, name) for name in _FIELDS}


_COMMITMENT = sa.select(commitments).where(commitments.c.id == sa.bindparam("commitment_id"))


async def get_commitment(conn: AsyncConnection, commitment_id: str) -> dict[str, Any]:
    row = (await conn.execute(_COMMITMENT, {"commitment_id": commitment_id})).first()
    if row is None:
        raise NotFound(f"Commitment {commitment_id!r} does not exist.")
    return commitment_dict(row)


async def commitment_parties(conn: AsyncConnection, commitment_ids: Sequence[str]) -> dict[str, Any]:
    """id → (id, payer_id, payee_id) of those commitments that exist: who may see and decide them."""
    rows = await conn.execute(
        sa.select(commitments.c.id, commitments.c.payer_id, commitments.c.payee_id).where(
            commitments.c.id.in_(list(commitment_ids))
        )
    )
    return {row.id: row for row in rows}


async def list_commitments(
    conn: AsyncConnection,
    *,
    filters: dict[str, str | None],
    offset: int,
    limit: int,
    where: sa.ColumnElement[bool] | None = None,
) -> tuple[int, list[dict[str, Any]]]:
    """Commitments matching every filter (and `where`, the caller's scope), oldest first."""
    query = sa.select(commitments)
    if where is not None:
        query = query.where(where)
    for name, value in filters.items():
        if value is not None:
            query = query.where(commitments.c[name] == value)
    total = (await conn.execute(sa.select(sa.func.count()).select_from(query.subquery()))).scalar_one()
    rows = (
        await conn.execute(query.order_by(commitments.c.created_at, commitments.c.id).offset(offset).limit(limit))
    ).all()
    return total, [commitment_dict(r) for r in rows]


_INSTITUTION = sa.select(institutions).where(institutions.c.id == sa.bindparam("institution_id"))
_POLICY = sa.select(policies).where(policies.c.institution_id == sa.bindparam("institution_id"))


async def policy_for(conn: AsyncConnection, institution_id: str) -> dict[str, Any]:
    """The institution's policy, or the default for its membership when none was set."""
    params = {"institution_id": institution_id}
    institution = (await conn.execute(_INSTITUTION, params)).first()
    row = (await conn.execute(_POLICY, params)).first()
    if institution is None and row is None:
        raise NotFound(f"Institution {institution_id!r} is not known to billing.")
    if row is not None:
        return {"institution_id": institution_id, "mode": row.mode, "yearly_budget": row.yearly_budget}
    assert institution is not None
    return {
        "institution_id": institution_id,
        "mode": domain.default_mode(institution.member),
        "yearly_budget": None,
    }


def _cents_sum(expression: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    return sa.func.coalesce(sa.func.sum(sa.type_coerce(expression, sa.BigInteger)), 0)


# Accepted amounts plus chargeable amounts (the share actually owed), in cents.
_BUDGET_USED = sa.select(
    _cents_sum(
        sa.case(
            (commitments.c.status == domain.Status.ACCEPTED, sa.type_coerce(commitments.c.amount, sa.BigInteger)),
            (
                commitments.c.status == domain.Status.CHARGEABLE,
                sa.type_coerce(commitments.c.chargeable_amount, sa.BigInteger),
            ),
            else_=0,
        )
    )
).where(
    commitments.c.payer_id == sa.bindparam("payer_id"),
    commitments.c.academic_year == sa.bindparam("academic_year"),
    commitments.c.status.in_(domain.COUNTS_AGAINST_BUDGET),
)


async def budget_used(conn: AsyncConnection, payer_id: str, academic_year: str) -> Decimal:
    """Accepted amounts plus chargeable amounts (the share actually owed) of the payer's academic year."""
    total = (await conn.execute(_BUDGET_USED, {"payer_id": payer_id, "academic_year": academic_year})).scalar_one()
    return Decimal(int(total)) / 100


# --- invoices ----------------------------------------------------------------------------------

_LINE_FIELDS = ("line_no", "commitment_id", "enrolment_id", "offering_id", "academic_year", "description", "amount")


def _line_count() -> sa.Label[Any]:
    return (
        sa.select(sa.func.count())
        .where(invoice_lines.c.invoice_id == invoices.c.id)
        .correlate(invoices)
        .scalar_subquery()
        .label("line_count")
    )


def _documents() -> sa.Select[Any]:
    """Invoices with their line count and, for credit notes, the credited invoice's number."""
    original = invoices.alias("original")
    return sa.select(invoices, _line_count(), original.c.number.label("original_invoice_number")).select_from(
        invoices.outerjoin(original, original.c.id == invoices.c.original_invoice_id)
    )


async def list_invoices(
    conn: AsyncConnection,
    *,
    payee: str | None,
    payer: str | None,
    kind: str | None,
    period_start: date | None,
    period_end: date | None,
    offset: int,
    limit: int,
    where: sa.ColumnElement[bool] | None = None,
) -> tuple[int, list[dict[str, Any]]]:
    """Invoices and credit notes; a period filter keeps documents whose period overlaps it, and `where`
    (the caller's scope) those the caller may see."""
    conditions: list[sa.ColumnElement[bool]] = [] if where is None else [where]
    if payee is not None:
        conditions.append(invoices.c.payee_id == payee)
    if payer is not None:
        conditions.append(invoices.c.payer_id == payer)
    if kind is not None:
        conditions.append(invoices.c.kind == kind)
    if period_start is not None:
        conditions.append(invoices.c.period_end >= period_start)
    if period_end is not None:
        conditions.append(invoices.c.period_start <= period_end)
    query = _documents().where(*conditions)
    total = (await conn.execute(sa.select(sa.func.count()).select_from(invoices).where(*conditions))).scalar_one()
    rows = (
        await conn.execute(
            query.order_by(invoices.c.issue_date, invoices.c.payee_id, invoices.c.number).offset(offset).limit(limit)
        )
    ).all()
    return total, [dict(r._mapping) for r in rows]


async def get_invoice(conn: AsyncConnection, invoice_id: str) -> dict[str, Any]:
    """One invoice or credit note with its lines."""
    row = (await conn.execute(_documents().where(invoices.c.id == invoice_id))).first()
    if row is None:
        raise NotFound(f"No invoice or credit note has id {invoice_id!r}.")
    lines = (
        await conn.execute(
            sa.select(*(invoice_lines.c[name] for name in _LINE_FIELDS))
            .where(invoice_lines.c.invoice_id == invoice_id)
            .order_by(invoice_lines.c.line_no)
        )
    ).all()
    original_issue_date = None
    if row.original_invoice_id is not None:
        original_issue_date = (
            await conn.execute(sa.select(invoices.c.issue_date).where(invoices.c.id == row.original_invoice_id))
        ).scalar_one()
    return {
        **row._mapping,
        "original_invoice_issue_date": original_issue_date,
        "lines": [dict(line._mapping) for line in lines],
    }


async def party(conn: AsyncConnection, institution_id: str) -> Party:
    """What the e-invoice says of an institution, from the local copy (fallbacks in `einvoice`)."""
    row = (await conn.execute(sa.select(institutions).where(institutions.c.id == institution_id))).first()
    if row is None:
        return Party(institution_id=institution_id)
    return Party(
        institution_id=institution_id,
        name=row.name_fi or row.name_sv or row.name_en,
        business_id=row.business_id,
        einvoice_address=row.einvoice_address,
        municipality=row.municipality,
    )
