"""Composition root of reporting: settings → engine → API and worker (consumer of every event)."""

from __future__ import annotations

from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from services.reporting.api import router
from services.reporting.consumers import SUBSCRIPTIONS
from services.reporting.rebuild import rebuild_if_stale
from services.reporting.settings import Settings
from services.reporting.tables import inbox
from shared.db import make_engine
from shared.service import make_api, make_worker

MIGRATIONS = Path(__file__).parent / "migrations"
PREFIX = "/api/reports"


def build_api(settings: Settings) -> FastAPI:
    """The reports API. It only reads, so with `database_read_only` it can run as extra processes beside
    the one that also runs the worker (SQLite: deferred read transactions, decision 004)."""
    return make_api(
        settings,
        make_engine(settings.database_url, read_only=settings.database_read_only),
        router,
        prefix=PREFIX,
        title="Tarjotin reports",
        description="Participants, completions, billing, supply and demand, follow-up: built from events.",
    )


def build_worker(settings: Settings, engine: AsyncEngine | None = None) -> list[Coroutine[Any, Any, None]]:
    """The consumer of every event; it first rebuilds the read models if they are stale (see rebuild.py).

    `engine`: the API's, when both run in one process (`python -m services.reporting all`).
    """
    if settings.database_read_only:
        raise SystemExit(
            "TARJOTIN_REPORTING_DATABASE_READ_ONLY is for API-only processes (`python -m services.reporting api`): "
            "the worker writes the read models. Unset it for `worker` and `all`."
        )
    engine = engine or make_engine(settings.database_url)
    loops = make_worker(settings, engine, outbox=None, inbox=inbox, subscriptions=SUBSCRIPTIONS)
    return [_after_rebuild_check(engine, loop) for loop in loops]


async def _after_rebuild_check(engine: AsyncEngine, loop: Coroutine[Any, Any, None]) -> None:
    try:
        await rebuild_if_stale(engine)
    except BaseException:
        loop.close()
        raise
    await loop
