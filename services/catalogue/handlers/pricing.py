"""The network's pricing guideline per academic year."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from services.catalogue import domain, views
from services.catalogue.handlers.events import emit
from services.catalogue.tables import pricing_guidelines
from shared.db import insert_ignoring_duplicates
from shared.errors import Conflict
from shared.events import PricingGuidelineSet


async def set_pricing_guideline(
    conn: AsyncConnection, academic_year: str, guideline: domain.Guideline, correlation_id: str
) -> int:
    """Set the year's guideline and publish `pricing_guideline.set` (sequence: the year's version).

    Existing offerings keep their prices and late-withdrawal share. Setting the same values again
    changes nothing and publishes nothing. Returns the year's version.
    """
    domain.check_academic_year(academic_year)
    g = pricing_guidelines.c
    row = (await conn.execute(sa.select(pricing_guidelines).where(g.academic_year == academic_year))).first()
    if row is not None and views.guideline_of(row) == guideline:
        return int(row.version)
    values = {
        "price_per_credit": guideline.price_per_credit,
        "external_surcharge_percent": guideline.external_surcharge_percent,
        "late_withdrawal_percent": guideline.late_withdrawal_percent,
        "free_cancellation_days": guideline.free_cancellation_days,
    }
    version = 1 if row is None else row.version + 1
    if row is None:
        row_values = {"academic_year": academic_year, "version": 1, **values}
        written = await conn.execute(insert_ignoring_duplicates(conn, pricing_guidelines, row_values))
    else:
        written = await conn.execute(
            pricing_guidelines.update()
            .where(g.academic_year == academic_year, g.version == row.version)
            .values(version=version, **values)
        )
    if written.rowcount != 1:
        raise Conflict(f"The {academic_year} guideline was set by someone else at the same time; try again.")
    event = PricingGuidelineSet(academic_year=academic_year, **values)
    await emit(conn, correlation_id, (event, academic_year, version))
    return version
