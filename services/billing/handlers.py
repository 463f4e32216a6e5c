"""Billing use cases and event handlers; each runs inside its caller's transaction."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from services.billing import domain, views
from services.billing.tables import commitments, institutions, outbox, policies
from shared.bus import stage
from shared.db import upsert_if_newer
from shared.errors import NotFound
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

SOURCE = "billing"


class PayerUnknown(Exception):
    """The payer's `institution.registered` has not arrived yet; retry later."""


def _facts(row: sa.Row[Any]) -> dict[str, Any]:
    return {
        "commitment_id": row.id,
        "enrolment_id": row.enrolment_id,
        "offering_id": row.offering_id,
        "payer_id": row.payer_id,
        "payee_id": row.payee_id,
        "amount": row.amount,
        "academic_year": row.academic_year,
    }


async def _emit(conn: AsyncConnection, data: EventData, commitment_id: str, version: int, correlation_id: str) -> None:
    await stage(
        conn,
        outbox,
        new_event(data, source=SOURCE, subject=commitment_id, sequence=version, correlation_id=correlation_id),
    )


async def _load(conn: AsyncConnection, commitment_id: str) -> sa.Row[Any]:
    row = (await conn.execute(sa.select(commitments).where(commitments.c.id == commitment_id))).first()
    if row is None:
        raise NotFound(f"Commitment {commitment_id!r} does not exist.")
    return row


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
    row = await _load(conn, commitment_id)
    status = domain.decide(row.status, accept)
    version = row.version + 1
    await conn.execute(
        commitments.update()
        .where(commitments.c.id == commitment_id, commitments.c.version == row.version)
        .values(status=status, decided_by=by, reason=reason, version=version, updated_at=datetime.now(UTC))
    )
    row = await _load(conn, commitment_id)
    event: EventData = (
        CommitmentAccepted(**_facts(row), decided_by=by) if accept else CommitmentRejected(**_facts(row), reason=reason)
    )
    await _emit(conn, event, commitment_id, version, correlation_id)
    return views.commitment_dict(row)


async def set_policy(
    conn: AsyncConnection, institution_id: str, mode: domain.Mode, yearly_budget: Decimal | None
) -> dict[str, Any]:
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
    data = InstitutionRegistered.model_validate(event.data)
    await upsert_if_newer(conn, institutions, {"id": data.institution_id}, event.sequence, {"member": data.member})


async def open_commitment(conn: AsyncConnection, event: Envelope) -> None:
    """A seat was held: open the payer's commitment at the price snapshot; accept at once if the policy says so."""
    data = EnrolmentRequested.model_validate(event.data)
    exists = (
        await conn.execute(sa.select(commitments.c.id).where(commitments.c.enrolment_id == data.enrolment_id))
    ).first()
    if exists is not None:
        return
    payer = (await conn.execute(sa.select(institutions).where(institutions.c.id == data.home_institution_id))).first()
    if payer is None:
        raise PayerUnknown(f"institution {data.home_institution_id} not yet known to billing")
    price_kind, amount = domain.price_for(payer.member, data.member_price, data.external_price)
    commitment_id, now = str(uuid.uuid4()), datetime.now(UTC)
    await conn.execute(
        commitments.insert().values(
            id=commitment_id,
            enrolment_id=data.enrolment_id,
            offering_id=data.offering_id,
            payer_id=data.home_institution_id,
            payee_id=data.provider_id,
            amount=amount,
            price_kind=price_kind,
            academic_year=data.academic_year,
            status=domain.Status.PENDING,
            version=1,
            created_at=now,
            updated_at=now,
        )
    )
    row = await _load(conn, commitment_id)
    await _emit(
        conn,
        CommitmentCreated(**_facts(row), price_kind=price_kind, status=domain.Status.PENDING),
        commitment_id,
        1,
        event.correlationid,
    )
    policy = await views.policy_for(conn, data.home_institution_id)
    used = await views.budget_used(conn, data.home_institution_id, data.academic_year)
    if domain.accepts_automatically(policy["mode"], policy["yearly_budget"], used, amount):
        await decide(conn, commitment_id, accept=True, by="automatic", correlation_id=event.correlationid)
