"""Composition root of reporting: settings → engine → API and worker (consumer of every event)."""

from __future__ import annotations

from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from services.reporting.api import router
from services.reporting.consumers import SUBSCRIPTIONS
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


def build_worker(settings: Settings) -> list[Coroutine[Any, Any, None]]:
    return make_worker(
        settings, make_engine(settings.database_url), outbox=None, inbox=inbox, subscriptions=SUBSCRIPTIONS
    )
