"""Helpers for the billing tests: a migrated database, an in-process API, and a `World` that feeds billing
the events catalogue and enrolment would publish. (No tests in this module.)"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from services.billing import handlers
from services.billing.api import InvoiceRunRead
from services.billing.app import build_api
from services.billing.settings import Settings
from services.billing.tables import commitments, outbox, parked_events
from shared.bus import Handler
from shared.db import make_engine
from shared.events import (
    EnrolmentCancelled,
    EnrolmentCompleted,
    EnrolmentRequested,
    EnrolmentWithdrawn,
    Envelope,
    EventData,
    InstitutionRegistered,
    LocalizedText,
    new_event,
)
from tests.support.apps import app_on, client_of
from tests.support.auth import ADMIN
from tests.support.infra import database, migrate

YEAR = "2026-2027"


@asynccontextmanager
async def billing_engine(kind: str, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    async with database(kind, tmp_path, "billing") as url:
        await migrate("billing", url)
        engine = make_engine(url, pool_size=20)
        try:
            yield engine
        finally:
            await engine.dispose()


@asynccontextmanager
async def billing_client(
    engine: AsyncEngine, today: Callable[[], date] | None = None, headers: dict[str, str] | None = ADMIN
) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process billing API; every request carries `headers` (the network admin's token unless told)."""
    app = app_on(build_api, Settings, engine)
    if today is not None:
        app.state.today = today
    async with client_of(app, "/api/billing", headers or {}) as client:
        yield client


def at(day: date) -> datetime:
    """Noon UTC of a day: when an event happened."""
    return datetime(day.year, day.month, day.day, 12, tzinfo=UTC)


class World:
    """Feeds billing's handlers the events the other services would publish, each in its own transaction."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.facts: dict[str, dict[str, Any]] = {}
        self.sequence: dict[str, int] = {}

    async def deliver(self, handler: Handler, event: Envelope) -> None:
        async with self.engine.begin() as conn:
            await handler(conn, event)

    async def institution(
        self,
        slug: str,
        *,
        member: bool = True,
        name: str | None = "default",
        business_id: str | None = None,
        einvoice_address: str | None = None,
        municipality: str | None = None,
        sequence: int = 1,
    ) -> str:
        data = InstitutionRegistered(
            institution_id=slug,
            names=LocalizedText(fi=f"{slug.capitalize()} oppilaitos" if name == "default" else name),
            kind="upper_secondary",
            member=member,
            municipality=municipality,
            business_id=business_id,
            einvoice_address=einvoice_address,
        )
        await self.deliver(
            handlers.on_institution,
            new_event(data, source="catalogue", subject=slug, sequence=sequence, correlation_id="t"),
        )
        return slug

    def envelope(
        self, data: EventData, enrolment_id: str, *, when: date | None = None, sequence: int | None = None
    ) -> Envelope:
        if sequence is None:
            sequence = self.sequence.get(enrolment_id, 0) + 1
        self.sequence[enrolment_id] = max(self.sequence.get(enrolment_id, 0), sequence)
        event = new_event(
            data, source="enrolment", subject=enrolment_id, sequence=sequence, correlation_id=f"c-{enrolment_id}"
        )
        return event.model_copy(update={"time": at(when)}) if when else event

    def requested(
        self,
        provider: str,
        payer: str,
        *,
        member_price: str = "120.00",
        external_price: str = "150.00",
        deadline: date | None = None,
        offering: str = "o1",
        year: str = YEAR,
        when: date | None = None,
    ) -> Envelope:
        enrolment_id = str(uuid.uuid4())
        self.facts[enrolment_id] = {
            "enrolment_id": enrolment_id,
            "offering_id": offering,
            "provider_id": provider,
            "home_institution_id": payer,
            "student_ref": f"s-{enrolment_id[:8]}",
            "academic_year": year,
        }
        data = EnrolmentRequested(
            **self.facts[enrolment_id],
            member_price=Decimal(member_price),
            external_price=Decimal(external_price),
            free_cancellation_deadline=deadline,
        )
        return self.envelope(data, enrolment_id, when=when)

    async def request(self, provider: str, payer: str, **kwargs: Any) -> str:
        """A seat was held: billing opens the commitment. Returns the enrolment id."""
        event = self.requested(provider, payer, **kwargs)
        await self.deliver(handlers.open_commitment, event)
        return event.subject

    def withdrawn(
        self, enrolment_id: str, percent: str, *, was_waitlisted: bool = False, when: date | None = None
    ) -> Envelope:
        data = EnrolmentWithdrawn(
            **self.facts[enrolment_id],
            late=Decimal(percent) > 0,
            charge_percent=Decimal(percent),
            was_waitlisted=was_waitlisted,
        )
        return self.envelope(data, enrolment_id, when=when)

    async def withdraw(self, enrolment_id: str, percent: str, **kwargs: Any) -> None:
        await self.deliver(handlers.on_withdrawn, self.withdrawn(enrolment_id, percent, **kwargs))

    def cancelled(self, enrolment_id: str, *, when: date | None = None) -> Envelope:
        return self.envelope(EnrolmentCancelled(**self.facts[enrolment_id], reason="too few"), enrolment_id, when=when)

    async def cancel(self, enrolment_id: str, **kwargs: Any) -> None:
        await self.deliver(handlers.on_cancelled, self.cancelled(enrolment_id, **kwargs))

    def completed(self, enrolment_id: str, outcome: str, percent: str, *, when: date | None = None) -> Envelope:
        data = EnrolmentCompleted(**self.facts[enrolment_id], outcome=outcome, charge_percent=Decimal(percent))
        return self.envelope(data, enrolment_id, when=when)

    async def complete(self, enrolment_id: str, outcome: str, percent: str, **kwargs: Any) -> None:
        await self.deliver(handlers.on_completed, self.completed(enrolment_id, outcome, percent, **kwargs))

    async def commitment(self, enrolment_id: str) -> sa.Row[Any]:
        async with self.engine.connect() as conn:
            return (await conn.execute(sa.select(commitments).where(commitments.c.enrolment_id == enrolment_id))).one()

    async def accept(self, enrolment_id: str) -> None:
        row = await self.commitment(enrolment_id)
        async with self.engine.begin() as conn:
            await handlers.decide(conn, row.id, accept=True, by="t", correlation_id="t")

    async def charge_due(self, today: date) -> int:
        async with self.engine.begin() as conn:
            return await handlers.charge_due(conn, today)

    async def run(self, period_start: date, period_end: date, today: date) -> dict[str, Any]:
        """An invoice run; answers the summary as the API shows it (money as strings)."""
        async with self.engine.begin() as conn:
            run = await handlers.run_invoices(conn, period_start, period_end, today=today, correlation_id="run")
        return InvoiceRunRead.model_validate(run).model_dump(mode="json")

    async def events(self, subject: str | None = None) -> list[dict[str, Any]]:
        """Staged outbox events (optionally of one aggregate), oldest first."""
        async with self.engine.connect() as conn:
            rows = (await conn.execute(sa.select(outbox.c.payload).order_by(outbox.c.id))).all()
        events = [orjson.loads(r.payload) for r in rows]
        return [e for e in events if subject is None or e["subject"] == subject]

    async def parked(self) -> int:
        async with self.engine.connect() as conn:
            return int((await conn.execute(sa.select(sa.func.count()).select_from(parked_events))).scalar_one())
