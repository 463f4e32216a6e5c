"""Offerings: create, change, and the lifecycle draft → published → closed/cancelled → completed.

Every write goes through `_write`, which bumps the version only if nobody changed the offering
since it was read (the version is the events' `sequence`). Events go out only for offerings other
services know of: those that were published at some point.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from services.catalogue import domain, search, views
from services.catalogue.domain import OfferingStatus
from services.catalogue.handlers.events import emit, offering_event
from services.catalogue.tables import offerings
from shared.errors import Conflict
from shared.events import OfferingCancelled, OfferingPublished, OfferingUpdated


@dataclass(frozen=True)
class CreateOffering:
    course_id: str
    plan: domain.OfferingPlan
    member_price: Decimal | None = None
    external_price: Decimal | None = None
    free_cancellation_deadline: date | None = None
    external_id: str | None = None


async def check_external_id_free(conn: AsyncConnection, provider_id: str, external_id: str | None) -> None:
    if external_id is None:
        return
    o = offerings.c
    taken = (
        await conn.execute(sa.select(o.id).where(o.provider_id == provider_id, o.external_id == external_id))
    ).first()
    if taken:
        raise Conflict(f"{provider_id} already has an offering with external_id {external_id!r}.", offering_id=taken.id)


def offering_row(course: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """The row of a new draft (with a fresh id) from columns of `domain.new_offering_values`."""
    return {
        "id": str(uuid.uuid4()),
        "course_id": course["id"],
        "provider_id": course["provider_id"],
        "status": OfferingStatus.DRAFT,
        "version": 1,
        **values,
    }


async def create_offering(conn: AsyncConnection, cmd: CreateOffering) -> dict[str, Any]:
    """A draft offering of a course; prices and deadline default from the year's guideline."""
    course = await views.get_course(conn, cmd.course_id)
    domain.check_offering_plan(cmd.plan)
    guideline = await views.guideline_for(conn, domain.academic_year_of(cmd.plan.start_date))
    values = domain.new_offering_values(
        cmd.plan,
        course["credits"],
        guideline,
        member_price=cmd.member_price,
        external_price=cmd.external_price,
        deadline=cmd.free_cancellation_deadline,
    )
    await check_external_id_free(conn, course["provider_id"], cmd.external_id)
    await search.next_generation(conn)
    row = offering_row(course, {**values, "external_id": cmd.external_id})
    await conn.execute(offerings.insert().values(**row))
    await search.index_offerings(conn, offerings.c.id == row["id"])
    return await views.get_offering(conn, row["id"])


async def _write(conn: AsyncConnection, current: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """Write `values` at the next version unless the offering changed since `current` was read."""
    o = offerings.c
    await search.next_generation(conn)
    written = await conn.execute(
        offerings.update()
        .where(o.id == current["id"], o.version == current["version"])
        .values(**values, version=current["version"] + 1)
    )
    if written.rowcount != 1:
        raise Conflict("The offering was changed by someone else at the same time; reload it and try again.")
    await search.index_offerings(conn, o.id == current["id"])
    return await views.get_offering(conn, current["id"])


async def _announce_update(conn: AsyncConnection, data: dict[str, Any], correlation_id: str) -> None:
    if data["published_at"] is not None:
        await emit(conn, correlation_id, (offering_event(OfferingUpdated, data), data["id"], data["version"]))


async def update_offering(
    conn: AsyncConnection, offering_id: str, changes: dict[str, Any], correlation_id: str
) -> dict[str, Any]:
    """Change dates, limits, prices or deadline (see `domain.revise_offering`); `offering.updated` if published."""
    current = await views.get_offering(conn, offering_id)
    start = changes.get("start_date") or current["start_date"]
    guideline = await views.guideline_for(conn, domain.academic_year_of(start))
    diff = domain.revise_offering(current, changes, current["credits"], guideline)
    if not diff:
        return current
    data = await _write(conn, current, diff)
    await _announce_update(conn, data, correlation_id)
    return data


async def publish_offering(conn: AsyncConnection, offering_id: str, correlation_id: str) -> dict[str, Any]:
    """Open a draft to enrolment; the year's late-withdrawal share is fixed on it now."""
    current = await views.get_offering(conn, offering_id)
    status = domain.publish(current["status"])
    guideline = await views.guideline_for(conn, current["academic_year"])
    values = {
        "status": status,
        "late_withdrawal_percent": guideline.late_withdrawal_percent,
        "published_at": datetime.now(UTC),
    }
    data = await _write(conn, current, values)
    await emit(conn, correlation_id, (offering_event(OfferingPublished, data), offering_id, data["version"]))
    return data


async def publish_drafts(conn: AsyncConnection, offering_ids: Iterable[str], correlation_id: str) -> None:
    """Publish many drafts at once (a CSV import): as `publish_offering`, in a few statements."""
    ids = sorted(set(offering_ids))
    if not ids:
        return
    o = offerings.c
    await search.next_generation(conn)
    years = (await conn.execute(sa.select(o.id, o.academic_year).where(o.id.in_(ids), o.status == "draft"))).all()
    if len(years) != len(ids):
        raise Conflict("Some offerings were changed by someone else at the same time; try again.")
    now = datetime.now(UTC)
    for year in sorted({row.academic_year for row in years}):
        guideline = await views.guideline_for(conn, year)
        await conn.execute(
            offerings.update()
            .where(o.id.in_([row.id for row in years if row.academic_year == year]), o.status == "draft")
            .values(
                status=OfferingStatus.PUBLISHED,
                late_withdrawal_percent=guideline.late_withdrawal_percent,
                published_at=now,
                version=o.version + 1,
            )
        )
    await search.index_offerings(conn, o.id.in_(ids))
    published = await views.offerings_by_ids(conn, ids)
    events = [(offering_event(OfferingPublished, d), d["id"], d["version"]) for d in published]
    await emit(conn, correlation_id, *events)


async def cancel_offering(
    conn: AsyncConnection, offering_id: str, reason: str | None, correlation_id: str
) -> dict[str, Any]:
    """Cancel a draft, published or closed offering; publishes `offering.cancelled`."""
    current = await views.get_offering(conn, offering_id)
    status = domain.cancel(current["status"])
    data = await _write(conn, current, {"status": status, "cancellation_reason": reason})
    event = OfferingCancelled(offering_id=offering_id, provider_id=data["provider_id"], reason=reason)
    await emit(conn, correlation_id, (event, offering_id, data["version"]))
    return data


async def close_offering(conn: AsyncConnection, offering_id: str, correlation_id: str) -> dict[str, Any]:
    """Stop enrolment (published → closed); `offering.updated` with the new status."""
    current = await views.get_offering(conn, offering_id)
    data = await _write(conn, current, {"status": domain.close(current["status"])})
    await _announce_update(conn, data, correlation_id)
    return data


async def complete_offering(conn: AsyncConnection, offering_id: str, correlation_id: str) -> dict[str, Any]:
    """The run is over (published/closed → completed); `offering.updated` with the new status."""
    current = await views.get_offering(conn, offering_id)
    data = await _write(conn, current, {"status": domain.complete(current["status"])})
    await _announce_update(conn, data, correlation_id)
    return data


async def touch_offerings(conn: AsyncConnection, offering_ids: Iterable[str], correlation_id: str) -> None:
    """After a change of their course or provider: new versions, a fresh index, `offering.updated` if published."""
    ids = sorted(set(offering_ids))
    if not ids:
        return
    o = offerings.c
    await search.next_generation(conn)
    await conn.execute(offerings.update().where(o.id.in_(ids)).values(version=o.version + 1))
    await search.index_offerings(conn, o.id.in_(ids))
    for data in await views.offerings_by_ids(conn, ids):
        await _announce_update(conn, data, correlation_id)
