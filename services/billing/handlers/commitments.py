"""Opening commitments, deciding them (one by one or in bulk), policies, the local copy of institutions."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from services.billing import domain, views
from services.billing.handlers.common import SOURCE, emit, facts, load, update_versioned
from services.billing.handlers.lifecycle import apply_parked
from services.billing.tables import commitments, institutions, outbox, parked_events, policies
from shared.bus import stage_with
from shared.db import Writes, upsert_if_newer
from shared.events import (
    CommitmentAccepted,
    CommitmentCreated,
    CommitmentRejected,
    EnrolmentRequested,
    Envelope,
    EventData,
    InstitutionRegistered,
    new_event,
)

AUTOMATIC = "automatic"  # who decided a commitment the policy accepted at once

# The payer (locked) with its policy, and the commitment already opened for the enrolment, if any.
_OPENING = (
    sa.select(
        institutions.c.member,
        policies.c.mode,
        policies.c.yearly_budget,
        sa.select(commitments.c.id)
        .where(commitments.c.enrolment_id == sa.bindparam("enrolment_id"))
        .scalar_subquery()
        .label("existing"),
    )
    .select_from(institutions.outerjoin(policies, policies.c.institution_id == institutions.c.id))
    .where(institutions.c.id == sa.bindparam("payer_id"))
    .with_for_update(of=institutions)
)
# A new commitment; it answers how many events wait for it (they overtook its `enrolment.requested`).
_OPEN = commitments.insert().returning(
    sa.select(sa.func.count())
    .where(parked_events.c.enrolment_id == sa.bindparam("parked_for"))
    .scalar_subquery()
    .label("parked")
)
_PENDING_BY_IDS = (
    sa.select(commitments)
    .where(commitments.c.id.in_(sa.bindparam("ids", expanding=True)))
    .order_by(commitments.c.id)
    .with_for_update()
)


class PayerUnknown(Exception):
    """The payer's `institution.registered` has not arrived yet; retry later."""


async def _decide_row(
    conn: AsyncConnection, row: sa.Row[Any], *, accept: bool, by: str, correlation_id: str, reason: str | None
) -> dict[str, Any]:
    status = domain.decide(row.status, accept)
    row = await update_versioned(conn, row, status=status, decided_by=by, reason=reason)
    event: EventData = (
        CommitmentAccepted(**facts(row), decided_by=by) if accept else CommitmentRejected(**facts(row), reason=reason)
    )
    await emit(conn, event, row.id, row.version, correlation_id)
    return views.commitment_dict(row)


async def decide(
    conn: AsyncConnection,
    commitment_id: str,
    *,
    accept: bool,
    by: str,
    correlation_id: str,
    reason: str | None = None,
) -> dict[str, Any]:
    """Accept or reject a pending commitment; the decision flows back to enrolment as an event."""
    row = await load(conn, commitment_id, lock=True)
    return await _decide_row(conn, row, accept=accept, by=by, correlation_id=correlation_id, reason=reason)


async def decide_many(
    conn: AsyncConnection,
    commitment_ids: Sequence[str],
    *,
    accept: bool,
    by: str,
    correlation_id: str,
    reason: str | None = None,
) -> list[dict[str, Any]]:
    """Accept or reject several pending commitments: all of them, or none with the ids in the way named."""
    ids = list(dict.fromkeys(commitment_ids))
    rows = {row.id: row for row in (await conn.execute(_PENDING_BY_IDS, {"ids": ids})).all()}
    domain.check_bulk(ids, {cid: row.status for cid, row in rows.items()}, accept)
    return [
        await _decide_row(conn, rows[cid], accept=accept, by=by, correlation_id=correlation_id, reason=reason)
        for cid in ids
    ]


async def set_policy(
    conn: AsyncConnection, institution_id: str, mode: domain.Mode, yearly_budget: Decimal | None
) -> dict[str, Any]:
    domain.check_policy(mode, yearly_budget)
    await views.policy_for(conn, institution_id)
    updated = await conn.execute(
        policies.update()
        .where(policies.c.institution_id == institution_id)
        .values(mode=mode, yearly_budget=yearly_budget)
    )
    if updated.rowcount == 0:
        await conn.execute(
            policies.insert().values(institution_id=institution_id, mode=mode, yearly_budget=yearly_budget)
        )
    return await views.policy_for(conn, institution_id)


# --- consumed events -------------------------------------------------------------------------------


async def on_institution(conn: AsyncConnection, event: Envelope) -> None:
    """Keep what billing needs of an institution: membership, and names and ids for the e-invoice."""
    data = InstitutionRegistered.model_validate(event.data)
    await upsert_if_newer(
        conn,
        institutions,
        {"id": data.institution_id},
        event.sequence,
        {
            "member": data.member,
            "name_fi": data.names.fi,
            "name_sv": data.names.sv,
            "name_en": data.names.en,
            "business_id": data.business_id,
            "einvoice_address": data.einvoice_address,
            "municipality": data.municipality,
        },
    )


async def open_commitment(conn: AsyncConnection, event: Envelope) -> None:
    """A seat was held: open the payer's commitment at the price snapshot; accept at once if the policy says so.

    Two statements on PostgreSQL when nothing waits for the commitment: the payer (locked) with its
    policy and any commitment already opened for the enrolment, then the new row (already accepted when
    accepted at once: `commitment.created` v1 and `commitment.accepted` v2 describe its two versions,
    and the insert answers whether parked events wait for it) with both events' outbox rows in the same
    statement (`shared.db.Writes`; on SQLite a third statement); one more, the budget used, only under
    a yearly budget.
    """
    data = EnrolmentRequested.model_validate(event.data)
    # Locking the payer's row serialises its automatic acceptances, so two workers cannot both
    # see the same unused budget (PostgreSQL; SQLite has a single writer anyway).
    payer = (
        await conn.execute(_OPENING, {"payer_id": data.home_institution_id, "enrolment_id": data.enrolment_id})
    ).first()
    if payer is None:
        raise PayerUnknown(f"institution {data.home_institution_id} not yet known to billing")
    if payer.existing is not None:
        return
    price_kind, amount = domain.price_for(payer.member, data.member_price, data.external_price)
    mode = payer.mode if payer.mode is not None else domain.default_mode(payer.member)
    budget = payer.yearly_budget if payer.mode is not None else None
    used = Decimal(0)
    if mode == domain.Mode.AUTOMATIC and budget is not None:
        # After the lock: this statement sees what the previous holder accepted.
        used = await views.budget_used(conn, data.home_institution_id, data.academic_year)
    accepted = domain.accepts_automatically(mode, budget, used, amount)
    commitment_id, now = str(uuid.uuid4()), datetime.now(UTC)
    commitment = {
        "commitment_id": commitment_id,
        "enrolment_id": data.enrolment_id,
        "offering_id": data.offering_id,
        "payer_id": data.home_institution_id,
        "payee_id": data.provider_id,
        "amount": amount,
        "academic_year": data.academic_year,
    }
    events = [
        new_event(
            CommitmentCreated(**commitment, price_kind=price_kind, status=domain.Status.PENDING),
            source=SOURCE,
            subject=commitment_id,
            sequence=1,
            correlation_id=event.correlationid,
        )
    ]
    if accepted:
        events.append(
            new_event(
                CommitmentAccepted(**commitment, decided_by=AUTOMATIC),
                source=SOURCE,
                subject=commitment_id,
                sequence=2,
                correlation_id=event.correlationid,
            )
        )
    writes = Writes(conn)  # on PostgreSQL the events' outbox rows go with the commitment's insert
    await stage_with(writes, outbox, *events)
    parked = (
        await writes.execute(
            _OPEN,
            {
                "parked_for": data.enrolment_id,
                "id": commitment_id,
                "enrolment_id": data.enrolment_id,
                "offering_id": data.offering_id,
                "payer_id": data.home_institution_id,
                "payee_id": data.provider_id,
                "amount": amount,
                "price_kind": price_kind,
                "academic_year": data.academic_year,
                "status": domain.Status.ACCEPTED if accepted else domain.Status.PENDING,
                "decided_by": AUTOMATIC if accepted else None,
                "free_cancellation_deadline": data.free_cancellation_deadline,
                "enrolment_seq": event.sequence,
                "version": 2 if accepted else 1,
                "created_at": now,
                "updated_at": now,
            },
        )
    ).scalar_one()
    if parked:
        await apply_parked(conn, data.enrolment_id)
