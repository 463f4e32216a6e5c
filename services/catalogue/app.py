"""Composition root of the catalogue: settings → engine → API and worker (relay)."""

from __future__ import annotations

import time
from collections.abc import Coroutine
from datetime import date
from pathlib import Path
from typing import Any

import structlog
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.middleware import Middleware

from services.catalogue.api import router
from services.catalogue.consumers import SUBSCRIPTIONS
from services.catalogue.search import AnswerCache, FacetCache
from services.catalogue.search.cache import RepeatedSearchMiddleware
from services.catalogue.search.query import warm
from services.catalogue.settings import Settings
from services.catalogue.tables import audit_log, idempotency_keys, inbox, outbox
from shared.db import make_engine
from shared.service import make_api, make_worker

MIGRATIONS = Path(__file__).parent / "migrations"
PREFIX = "/api/catalogue"
# PostgreSQL's default random_page_cost (4) prices an index probe as a disk seek; the catalogue's search
# tables are small and in memory, so at 4 a word search scanned every offering rather than fetch the
# few of the matching courses by index: 3x the database CPU per search (docs/performance.md).
PG_SETTINGS = (("random_page_cost", "1.1"),)
# Offerings whose JSON a search keeps for the next search (~0.7 KB each, within the cache's byte budget).
ITEMS = 20_000
log = structlog.get_logger("catalogue")


def build_api(settings: Settings) -> FastAPI:
    facet_cache = FacetCache()

    async def on_start(engine: AsyncEngine) -> None:
        await warm_search(engine, facet_cache)

    app = make_api(
        settings,
        make_engine(settings.database_url, pg_settings=PG_SETTINGS),
        router,
        prefix=PREFIX,
        outbox=outbox,
        audit=audit_log,
        on_start=on_start,
        middleware=[Middleware(RepeatedSearchMiddleware, path=f"{PREFIX}/offerings")],
        title="Tarjotin catalogue",
        description="Institutions, pricing guidelines, courses and offerings of the network. Reading is public; "
        "changes need a bearer token (network admin, or the providing institution's staff).",
    )
    app.state.facet_cache = facet_cache
    app.state.search_cache = AnswerCache()
    app.state.item_cache = AnswerCache(entries=ITEMS)
    return app


async def warm_search(engine: AsyncEngine, facets: FacetCache | None = None) -> None:
    """Compile the common searches' statements and read the facet columns before the first request
    (`search.query.warm`)."""
    started = time.perf_counter()
    async with engine.connect() as conn:
        statements = await warm(conn, date.today(), facets)
        await conn.rollback()
    log.info("search statements warmed", statements=statements, ms=round((time.perf_counter() - started) * 1000))


def build_worker(settings: Settings) -> list[Coroutine[Any, Any, None]]:
    return make_worker(
        settings,
        make_engine(settings.database_url, pg_settings=PG_SETTINGS),
        outbox=outbox,
        inbox=inbox,
        subscriptions=SUBSCRIPTIONS,
        idempotency_keys=idempotency_keys,
    )
