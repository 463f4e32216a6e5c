"""Projections: every event is stored, then folded into the read models it concerns.

Each projection is idempotent (the consumer's inbox) and order-proof (the aggregate's `sequence`:
an event older than what a read model holds changes nothing).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from services.reporting import domain
from services.reporting.tables import enrolment_states, event_store, offerings, participant_counts
from shared.db import insert_ignoring_duplicates, upsert_if_newer
from shared.events import Envelope, OfferingPublished
from shared.events.enrolment import EnrolmentFacts

Projection = Callable[[AsyncConnection, Envelope], Awaitable[None]]


async def store_event(conn: AsyncConnection, event: Envelope) -> None:
    await conn.execute(
        insert_ignoring_duplicates(
            conn,
            event_store,
            {
                "event_id": event.id,
                "type": event.type,
                "subject": event.subject,
                "sequence": event.sequence,
                "time": event.time,
                "envelope": event.to_json(),
            },
        )
    )


async def project_offering(conn: AsyncConnection, event: Envelope) -> None:
    data = OfferingPublished.model_validate(event.data)
    values = {
        "provider_id": data.provider_id,
        "title": data.titles.fi or data.titles.sv or data.titles.en or data.offering_id,
        "subject": data.subject,
        "academic_year": data.academic_year,
        "max_participants": data.max_participants,
        "min_participants": data.min_participants,
        "status": event.data.get("status", "published"),
    }
    await upsert_if_newer(conn, offerings, {"id": data.offering_id}, event.sequence, values)


async def _bump(conn: AsyncConnection, offering_id: str, home: str, status: str, year: str, delta: int) -> None:
    key = {"offering_id": offering_id, "home_institution_id": home, "status": status}
    await conn.execute(insert_ignoring_duplicates(conn, participant_counts, {**key, "academic_year": year, "count": 0}))
    await conn.execute(
        participant_counts.update()
        .where(*(participant_counts.c[k] == v for k, v in key.items()))
        .values(count=participant_counts.c.count + delta)
    )


async def project_enrolment(conn: AsyncConnection, event: Envelope) -> None:
    """Move the enrolment to the status its newest event implies, keeping the counts in step."""
    facts = EnrolmentFacts.model_validate(event.data)
    status = domain.STATUS_BY_EVENT[event.routing_key]
    old = (
        await conn.execute(
            sa.select(enrolment_states.c.status, enrolment_states.c.version)
            .where(enrolment_states.c.enrolment_id == facts.enrolment_id)
            .with_for_update()
        )
    ).first()
    if old is not None and old.version >= event.sequence:
        return
    await upsert_if_newer(
        conn,
        enrolment_states,
        {"enrolment_id": facts.enrolment_id},
        event.sequence,
        {
            "offering_id": facts.offering_id,
            "home_institution_id": facts.home_institution_id,
            "academic_year": facts.academic_year,
            "status": status,
        },
    )
    if old is not None:
        await _bump(conn, facts.offering_id, facts.home_institution_id, old.status, facts.academic_year, -1)
    await _bump(conn, facts.offering_id, facts.home_institution_id, status, facts.academic_year, +1)


def recorder(projections: Mapping[str, Projection]) -> Projection:
    """The one handler of the reporting queue: store every event, then project it."""

    async def record(conn: AsyncConnection, event: Envelope) -> None:
        await store_event(conn, event)
        projection = projections.get(event.routing_key)
        if projection is not None:
            await projection(conn, event)

    return record
