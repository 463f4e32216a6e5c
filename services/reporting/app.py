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
    return make_api(
        settings,
        make_engine(settings.database_url),
        router,
        prefix=PREFIX,
        title="Tarjotin reports",
        description="Participants, completions, billing, supply and demand, follow-up: built from events.",
    )


def build_worker(settings: Settings, engine: AsyncEngine | None = None) -> list[Coroutine[Any, Any, None]]:
    """The consumer of every event; it first rebuilds the read models if they are stale (see rebuild.py).

    `engine`: the API's, when both run in one process (`python -m services.reporting all`).
    """
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
