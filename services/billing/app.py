"""Composition root of the billing: settings → engine → API and worker (relay, consumer)."""

from __future__ import annotations

from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from services.billing.api import router
from services.billing.consumers import SUBSCRIPTIONS
from services.billing.settings import Settings
from services.billing.tables import inbox, outbox
from shared.db import make_engine
from shared.service import make_api, make_worker

MIGRATIONS = Path(__file__).parent / "migrations"
PREFIX = "/api/billing"


def build_api(settings: Settings) -> FastAPI:
    return make_api(
        settings,
        make_engine(settings.database_url),
        router,
        prefix=PREFIX,
        outbox=outbox,
        title="Tarjotin billing",
        description="Payment commitments (maksusitoumus), commitment policies and invoices.",
    )


def build_worker(settings: Settings) -> list[Coroutine[Any, Any, None]]:
    return make_worker(
        settings, make_engine(settings.database_url), outbox=outbox, inbox=inbox, subscriptions=SUBSCRIPTIONS
    )
