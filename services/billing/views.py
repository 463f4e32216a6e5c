"""Read queries for billing GET endpoints."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from services.billing import domain
from services.billing.tables import commitments, institutions, policies
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
    "created_at",
    "updated_at",
)


def commitment_dict(row: sa.Row[Any]) -> dict[str, Any]:
    return {name: getattr(row, name) for name in _FIELDS}


async def get_commitment(conn: AsyncConnection, commitment_id: str) -> dict[str, Any]:
    row = (await conn.execute(sa.select(commitments).where(commitments.c.id == commitment_id))).first()
    if row is None:
        raise NotFound(f"Commitment {commitment_id!r} does not exist.")
    return commitment_dict(row)


async def list_commitments(
    conn: AsyncConnection, *, filters: dict[str, str | None], offset: int, limit: int
) -> tuple[int, list[dict[str, Any]]]:
    query = sa.select(commitments)
    for name, value in filters.items():
        if value is not None:
            query = query.where(commitments.c[name] == value)
    total = (await conn.execute(sa.select(sa.func.count()).select_from(query.subquery()))).scalar_one()
    rows = (
        await conn.execute(query.order_by(commitments.c.created_at, commitments.c.id).offset(offset).limit(limit))
    ).all()
    return total, [commitment_dict(r) for r in rows]


async def policy_for(conn: AsyncConnection, institution_id: str) -> dict[str, Any]:
    """The institution's policy, or the default for its membership when none was set."""
    institution = (await conn.execute(sa.select(institutions).where(institutions.c.id == institution_id))).first()
    row = (await conn.execute(sa.select(policies).where(policies.c.institution_id == institution_id))).first()
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


async def budget_used(conn: AsyncConnection, payer_id: str, academic_year: str) -> Decimal:
    total = (
        await conn.execute(
            sa.select(sa.func.coalesce(sa.func.sum(sa.type_coerce(commitments.c.amount, sa.BigInteger)), 0)).where(
                commitments.c.payer_id == payer_id,
                commitments.c.academic_year == academic_year,
                commitments.c.status.in_(domain.COUNTS_AGAINST_BUDGET),
            )
        )
    ).scalar_one()
    return Decimal(int(total)) / 100
