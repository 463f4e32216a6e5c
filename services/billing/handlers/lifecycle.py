"""What happens to a commitment after the decision: withdrawals, cancellations, results, deadlines.

Enrolment events can overtake the `enrolment.requested` that opens their commitment (a retried
message arrives late). Such an event is parked and applied as soon as the commitment is opened,
so it is neither lost nor left to dead-letter. Each commitment remembers the sequence of the newest
enrolment event it applied: a repeated or older event changes nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from services.billing import domain
from services.billing.handlers.common import apply, load_for_enrolment
from services.billing.tables import commitments, parked_events
from shared.db import insert_if_absent
from shared.events import EnrolmentCancelled, EnrolmentCompleted, EnrolmentWithdrawn, Envelope

Decide = Callable[[sa.Row[Any]], domain.Transition | None]

_SEEN = (
    commitments.update()
    .where(commitments.c.id == sa.bindparam("commitment_id"))
    .values(enrolment_seq=sa.bindparam("sequence"))
)
# Taken out in one statement; replayed in enrolment order.
_UNPARK = (
    parked_events.delete()
    .where(parked_events.c.enrolment_id == sa.bindparam("enrolment_id"))
    .returning(parked_events.c.sequence, parked_events.c.payload)
)
_DUE = (
    sa.select(commitments)
    .where(
        commitments.c.status == domain.Status.ACCEPTED,
        commitments.c.free_cancellation_deadline < sa.bindparam("today"),
    )
    .order_by(commitments.c.id)
    .limit(sa.bindparam("batch"))
    .with_for_update(skip_locked=True)
)


async def _park(conn: AsyncConnection, event: Envelope, enrolment_id: str) -> None:
    row = {
        "event_id": event.id,
        "enrolment_id": enrolment_id,
        "sequence": event.sequence,
        "payload": event.to_json(),
        "parked_at": datetime.now(UTC),
    }
    await insert_if_absent(conn, parked_events, row)


async def _follow(
    conn: AsyncConnection, event: Envelope, enrolment_id: str, decide: Decide, row: sa.Row[Any] | None = None
) -> None:
    """Apply an enrolment event to its commitment (`row` if the caller loaded it), or park it until the
    commitment exists."""
    if row is None:
        row = await load_for_enrolment(conn, enrolment_id)
    if row is None:
        await _park(conn, event, enrolment_id)
        return
    if event.sequence <= row.enrolment_seq:
        return
    transition = decide(row)
    if transition is None or not domain.changes(row.status, row.chargeable_amount, transition):
        await conn.execute(_SEEN, {"commitment_id": row.id, "sequence": event.sequence})
        return
    await apply(
        conn,
        row,
        transition,
        on=event.time.astimezone(UTC).date(),
        correlation_id=event.correlationid,
        enrolment_seq=event.sequence,
    )


async def on_withdrawn(conn: AsyncConnection, event: Envelope) -> None:
    """Free withdrawal voids; a late one leaves the late share chargeable. From the waitlist: nothing."""
    data = EnrolmentWithdrawn.model_validate(event.data)
    row = await load_for_enrolment(conn, data.enrolment_id)
    if row is None and data.was_waitlisted:
        return
    await _follow(
        conn,
        event,
        data.enrolment_id,
        lambda row: domain.after_withdrawal(row.status, row.amount, data.charge_percent),
        row,
    )


async def on_cancelled(conn: AsyncConnection, event: Envelope) -> None:
    """The provider cancelled the offering: void, even if chargeable or invoiced (a credit note follows)."""
    data = EnrolmentCancelled.model_validate(event.data)
    await _follow(conn, event, data.enrolment_id, lambda row: domain.after_cancellation(row.status))


async def on_completed(conn: AsyncConnection, event: Envelope) -> None:
    """A result was recorded: chargeable at the share the enrolment service sent (100, or the late share)."""
    data = EnrolmentCompleted.model_validate(event.data)
    await _follow(
        conn,
        event,
        data.enrolment_id,
        lambda row: domain.after_result(row.status, row.amount, data.outcome, data.charge_percent),
    )


FOLLOWERS: dict[str, Callable[[AsyncConnection, Envelope], Awaitable[None]]] = {
    "enrolment.withdrawn": on_withdrawn,
    "enrolment.cancelled": on_cancelled,
    "enrolment.completed": on_completed,
}


async def apply_parked(conn: AsyncConnection, enrolment_id: str) -> None:
    """Replay, in enrolment order, the events that arrived before this enrolment's commitment."""
    rows = (await conn.execute(_UNPARK, {"enrolment_id": enrolment_id})).all()
    for row in sorted(rows, key=lambda row: row.sequence):
        event = Envelope.from_json(row.payload)
        await FOLLOWERS[event.routing_key](conn, event)


async def charge_due(conn: AsyncConnection, today: date, *, batch: int = 500) -> int:
    """Accepted commitments past their free-cancellation deadline become chargeable at 100 %.

    Run by the invoice run before it gathers, and every minute by the worker. Chargeable from the
    day after the deadline, whenever this runs. Returns how many commitments changed.
    """
    changed = 0
    while True:
        rows = (await conn.execute(_DUE, {"today": today, "batch": batch})).all()
        for row in rows:
            transition = domain.after_deadline(row.status, row.amount)
            assert transition is not None
            await apply(
                conn,
                row,
                transition,
                on=domain.charged_from(row.free_cancellation_deadline),
                correlation_id=f"deadline:{row.id}",
            )
        changed += len(rows)
        if len(rows) < batch:
            return changed
