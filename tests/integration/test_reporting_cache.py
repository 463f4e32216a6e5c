"""The API keeps rendered reports while the read models are unchanged, and never serves one after a change."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from services.reporting.app import build_api
from services.reporting.consumers import SUBSCRIPTIONS
from services.reporting.handlers import raise_generation, store_event
from services.reporting.rebuild import rebuild
from services.reporting.settings import Settings
from services.reporting.tables import inbox, offering_counts, read_model_generation
from shared.bus import Consumer
from shared.events import Envelope
from tests.integration.test_reporting_scenario import YEAR, feed, reporting_engine, scenario
from tests.support.apps import app_on, client_of

pytestmark = pytest.mark.integration
PARTICIPANTS = f"/participants?academic_year={YEAR}"


def split(events: list[Envelope]) -> tuple[list[Envelope], list[Envelope]]:
    """The scenario up to its last enrolment event of O1, and the events after it."""
    last = max(i for i, e in enumerate(events) if e.routing_key.startswith("enrolment.") and e.subject == "e9")
    return events[: last + 1], events[last + 1 :]


@pytest.fixture
async def engine(db_kind: str, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    async with reporting_engine(db_kind, tmp_path, "reporting_cache") as engine:
        yield engine


@pytest.fixture
async def client(engine: AsyncEngine) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(app_on(build_api, Settings, engine), "/api/reports") as client:
        yield client


async def generation(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(sa.select(read_model_generation.c.generation))).scalar_one())


async def test_identical_requests_between_commits_are_answered_from_the_cache(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    await feed(engine, scenario().events)
    first = (await client.get(PARTICIPANTS)).json()
    assert first["totals"]["requests"] > 0
    async with engine.begin() as conn:  # behind the projections' back: the generation stays
        await conn.execute(offering_counts.delete())
    assert (await client.get(PARTICIPANTS)).json() == first
    async with engine.begin() as conn:
        await raise_generation(conn)
    assert (await client.get(PARTICIPANTS)).json()["totals"]["requests"] == 0


async def test_a_report_cached_before_new_events_is_not_served_after_them(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    before, after = split(scenario().events)
    await feed(engine, before)
    early = {path: (await client.get(path)).content for path in (PARTICIPANTS, f"/billing?academic_year={YEAR}")}
    for path, body in early.items():
        assert (await client.get(path)).content == body  # cached now
    await feed(engine, after)
    for path, body in early.items():
        assert (await client.get(path)).content != body, f"{path} served from before the new events"


async def test_a_consumer_batch_raises_the_generation_once_and_its_changes_are_served(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    before, after = split(scenario().events)
    consumer = Consumer(
        engine, inbox, SUBSCRIPTIONS, service="reporting", amqp_url="amqp://unused", exchange="x", queue="q"
    )
    assert await consumer.apply(before) == [None] * len(before)
    seen = await generation(engine)
    early = (await client.get(PARTICIPANTS)).content
    assert await consumer.apply(after) == [None] * len(after)
    assert await generation(engine) == seen + 1  # one transaction, one raise
    assert (await client.get(PARTICIPANTS)).content != early


async def test_a_rebuild_is_served_at_once(engine: AsyncEngine, client: httpx.AsyncClient) -> None:
    before, after = split(scenario().events)
    await feed(engine, before)
    early = (await client.get(PARTICIPANTS)).json()
    async with engine.begin() as conn:  # stored but not yet projected: only a rebuild shows them
        for event in after:
            await store_event(conn, event)
    assert (await client.get(PARTICIPANTS)).json() == early
    await rebuild(engine)
    rebuilt = (await client.get(PARTICIPANTS)).json()
    assert rebuilt != early and rebuilt["totals"]["requests"] > early["totals"]["requests"]
