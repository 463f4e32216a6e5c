"""What every billing handler shares: loading commitments, moving them on, staging their events.

The statements on the consumers' path are built once, here and in the handler modules, and run with
parameters: building a statement and its cache key per call cost more CPU than the database work.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from services.billing import domain
from services.billing.tables import commitments, outbox
from shared.bus import stage
from shared.errors import Conflict, NotFound
from shared.events import CommitmentChargeable, CommitmentVoided, EventData, new_event

SOURCE = "billing"

_BY_ID = sa.select(commitments).where(commitments.c.id == sa.bindparam("commitment_id"))
# FOR UPDATE on PostgreSQL (SQLite has one writer and leaves it out): whoever changes a commitment
# holds its row until commit, so concurrent workers see each other's changes.
_BY_ID_LOCKED = _BY_ID.with_for_update()
_BY_ENROLMENT_LOCKED = (
    sa.select(commitments).where(commitments.c.enrolment_id == sa.bindparam("enrolment_id")).with_for_update()
)
# The columns to change come as parameters (`update_versioned`); the new version answers with the row.
_NEXT_VERSION = (
    commitments.update()
    .where(commitments.c.id == sa.bindparam("commitment_id"), commitments.c.version == sa.bindparam("read_version"))
    .values(version=commitments.c.version + 1)
    .returning(*commitments.c)
)


def utc_today() -> date:
    return datetime.now(UTC).date()


def facts(row: sa.Row[Any]) -> dict[str, Any]:
    return {
        "commitment_id": row.id,
        "enrolment_id": row.enrolment_id,
        "offering_id": row.offering_id,
        "payer_id": row.payer_id,
        "payee_id": row.payee_id,
        "amount": row.amount,
        "academic_year": row.academic_year,
    }


async def emit(conn: AsyncConnection, data: EventData, subject: str, version: int, correlation_id: str) -> None:
    await stage(
        conn,
        outbox,
        new_event(data, source=SOURCE, subject=subject, sequence=version, correlation_id=correlation_id),
    )


async def load(conn: AsyncConnection, commitment_id: str, *, lock: bool = False) -> sa.Row[Any]:
    row = (await conn.execute(_BY_ID_LOCKED if lock else _BY_ID, {"commitment_id": commitment_id})).first()
    if row is None:
        raise NotFound(f"Commitment {commitment_id!r} does not exist.")
    return row


async def load_for_enrolment(conn: AsyncConnection, enrolment_id: str) -> sa.Row[Any] | None:
    return (await conn.execute(_BY_ENROLMENT_LOCKED, {"enrolment_id": enrolment_id})).first()


async def update_versioned(conn: AsyncConnection, row: sa.Row[Any], **values: Any) -> sa.Row[Any]:
    """Write the next version of a commitment, only if nobody wrote one since `row` was read; returns it."""
    params = {"commitment_id": row.id, "read_version": row.version, "updated_at": datetime.now(UTC), **values}
    updated = (await conn.execute(_NEXT_VERSION, params)).first()
    if updated is None:
        raise Conflict(f"Commitment {row.id} changed while this request ran; nothing was changed, try again.")
    return updated


async def apply(
    conn: AsyncConnection,
    row: sa.Row[Any],
    transition: domain.Transition,
    *,
    on: date,
    correlation_id: str,
    **extra: Any,
) -> sa.Row[Any]:
    """Move a commitment to voided or chargeable on day `on`, and publish it (sequence = new version)."""
    values: dict[str, Any] = {"status": transition.status, "reason": transition.reason, **extra}
    if transition.status == domain.Status.CHARGEABLE:
        values.update(
            charge_percent=transition.charge_percent, chargeable_amount=transition.chargeable_amount, chargeable_on=on
        )
    else:
        values.update(voided_on=on)
    row = await update_versioned(conn, row, **values)
    event: EventData
    if transition.status == domain.Status.CHARGEABLE:
        event = CommitmentChargeable(
            **facts(row), chargeable_amount=transition.chargeable_amount, reason=transition.reason
        )
    else:
        event = CommitmentVoided(**facts(row), reason=transition.reason)
    await emit(conn, event, row.id, row.version, correlation_id)
    return row
