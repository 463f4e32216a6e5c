"""Report queries over the read models."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from services.reporting import domain
from services.reporting.tables import offerings, participant_counts


async def participants(
    conn: AsyncConnection, *, academic_year: str | None, provider: str | None, offering_id: str | None
) -> dict[str, Any]:
    """Per offering: seats, held, confirmed, waitlisted, and the same by home institution."""
    query = sa.select(
        participant_counts.c.offering_id,
        participant_counts.c.home_institution_id,
        participant_counts.c.status,
        participant_counts.c.count.label("n"),
    ).where(participant_counts.c.count != 0)
    if academic_year:
        query = query.where(participant_counts.c.academic_year == academic_year)
    if offering_id:
        query = query.where(participant_counts.c.offering_id == offering_id)
    by_offering: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    by_home: dict[str, dict[str, dict[str, int]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(int)))
    for count_row in await conn.execute(query):
        by_offering[count_row.offering_id][count_row.status] += count_row.n
        by_home[count_row.offering_id][count_row.home_institution_id][count_row.status] += count_row.n

    info_query = sa.select(offerings)
    if academic_year:
        info_query = info_query.where(offerings.c.academic_year == academic_year)
    if provider:
        info_query = info_query.where(offerings.c.provider_id == provider)
    if offering_id:
        info_query = info_query.where(offerings.c.id == offering_id)
    info = {row.id: row for row in await conn.execute(info_query)}

    ids = sorted(set(info) | (set() if provider else set(by_offering)))
    items = []
    for oid in ids:
        row: Any = info.get(oid)
        items.append(
            {
                "offering_id": oid,
                "title": row.title if row else None,
                "provider_id": row.provider_id if row else None,
                "academic_year": row.academic_year if row else None,
                "max_participants": row.max_participants if row else None,
                **domain.participant_row(by_offering.get(oid, {})),
                "by_home_institution": {
                    home: domain.participant_row(counts) for home, counts in sorted(by_home.get(oid, {}).items())
                },
            }
        )
    totals = domain.participant_row(
        {s: sum(by_offering[o].get(s, 0) for o in ids if o in by_offering) for s in domain.PARTICIPANT_STATUSES}
    )
    return {"academic_year": academic_year, "totals": totals, "items": items}
