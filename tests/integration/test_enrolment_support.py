"""Helpers for the enrolment auth and privacy tests: a migrated database, the in-process API without a
default token, and a `World` that feeds the service the catalogue and billing events it consumes.
(No tests in this module.)"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from services.enrolment import handlers
from services.enrolment.app import build_api
from services.enrolment.settings import Settings
from shared.events import CommitmentAccepted, InstitutionRegistered, LocalizedText, OfferingPublished, new_event
from tests.support.apps import app_on, client_of
from tests.support.auth import ADMIN
from tests.support.infra import migrated_engine

TODAY = date.today()
# Home institutions (kao is a member, edupoli an outside one) and providers.
HOMES = {"kao": True, "edupoli": False}
PROVIDERS = {"sakky": True, "tampere": True}


@asynccontextmanager
async def enrolment_world(kind: str, tmp_path: Path) -> AsyncIterator[World]:
    """A migrated database of `kind` with the institutions registered, and the API in process."""
    async with (
        migrated_engine("enrolment", kind, tmp_path, "enrolauth", pool_size=10) as engine,
        client_of(app_on(build_api, Settings, engine), "/api/enrolments", {}) as client,
    ):
        world = World(engine, client)
        await world.seed()
        yield world


def enrolment_body(offering_id: str, home: str, learner: str) -> dict[str, Any]:
    return {
        "offering_id": offering_id,
        "home_institution_id": home,
        "student": {"learner_id": learner, "name": f"Name {learner}", "email": f"{learner.lower()}@example.fi"},
    }


def offering_event(
    offering_id: str,
    seats: int,
    sequence: int = 2,
    *,
    provider: str = "sakky",
    title: str = "Funktiot",
    credits: str = "3.0",
    prices: tuple[str, str] = ("120.00", "150.00"),
) -> Any:
    """`offering.published` as the catalogue would send it: open for enrolment now, starting in 30 days."""
    data = OfferingPublished(
        offering_id=offering_id,
        course_id="c1",
        provider_id=provider,
        titles=LocalizedText(fi=title),
        subject="mathematics",
        level="upper_secondary",
        credits=credits,
        languages=["fi"],
        delivery_mode="online_self_paced",
        academic_year="2026-2027",
        start_date=TODAY + timedelta(days=30),
        end_date=TODAY + timedelta(days=90),
        enrolment_opens=TODAY - timedelta(days=1),
        enrolment_closes=TODAY + timedelta(days=20),
        min_participants=1,
        max_participants=seats,
        member_price=Decimal(prices[0]),
        external_price=Decimal(prices[1]),
        free_cancellation_deadline=TODAY + timedelta(days=44),
    )
    return new_event(data, source="catalogue", subject=offering_id, sequence=sequence, correlation_id="seed")


class World:
    def __init__(self, engine: AsyncEngine, client: httpx.AsyncClient) -> None:
        self.engine, self.client = engine, client

    async def seed(self) -> None:
        async with self.engine.begin() as conn:
            for slug, member in {**HOMES, **PROVIDERS}.items():
                data = InstitutionRegistered(
                    institution_id=slug, names=LocalizedText(fi=slug), kind="upper_secondary", member=member
                )
                await handlers.on_institution(
                    conn, new_event(data, source="catalogue", subject=slug, sequence=1, correlation_id="seed")
                )

    async def offering(self, provider: str, seats: int = 50) -> str:
        offering_id = f"{provider}-{uuid.uuid4().hex[:8]}"
        event = offering_event(
            offering_id,
            seats,
            provider=provider,
            title=f"Kurssi {offering_id}",
            credits="2.0",
            prices=("80.00", "100.00"),
        )
        async with self.engine.begin() as conn:
            await handlers.on_offering(conn, event)
        return offering_id

    async def enrol(
        self, home: str, learner: str, offering_id: str, headers: dict[str, str] = ADMIN, **kwargs: Any
    ) -> dict[str, Any]:
        response = await self.client.post(
            "", json=enrolment_body(offering_id, home, learner), headers=headers, **kwargs
        )
        assert response.status_code in (200, 201), response.text
        return dict(response.json())

    async def confirm(self, enrolment: dict[str, Any]) -> None:
        data = CommitmentAccepted(
            commitment_id=str(uuid.uuid4()),
            enrolment_id=enrolment["id"],
            offering_id=enrolment["offering_id"],
            payer_id=enrolment["home_institution_id"],
            payee_id="sakky",
            amount=Decimal("80.00"),
            academic_year="2026-2027",
            decided_by="automatic",
        )
        async with self.engine.begin() as conn:
            await handlers.on_commitment_accepted(
                conn, new_event(data, source="billing", subject=data.commitment_id, sequence=2, correlation_id="t")
            )

    async def confirmed(self, home: str, learner: str, provider: str) -> dict[str, Any]:
        """A confirmed enrolment in a new offering of `provider` (so it can be withdrawn or given a result)."""
        enrolment = await self.enrol(home, learner, await self.offering(provider))
        await self.confirm(enrolment)
        return enrolment

    async def count(self, table: sa.Table, *where: sa.ColumnElement[bool]) -> int:
        async with self.engine.connect() as conn:
            query = sa.select(sa.func.count()).select_from(table)
            if where:
                query = query.where(*where)
            return int((await conn.execute(query)).scalar_one())
