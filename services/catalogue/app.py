"""Composition root of the catalogue: settings → engine → API and worker (relay)."""

from __future__ import annotations

from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from services.catalogue.api import router
from services.catalogue.consumers import SUBSCRIPTIONS
from services.catalogue.search import AnswerCache, FacetCache
from services.catalogue.settings import Settings
from services.catalogue.tables import audit_log, idempotency_keys, inbox, outbox
from shared.db import make_engine
from shared.service import make_api, make_worker

MIGRATIONS = Path(__file__).parent / "migrations"
PREFIX = "/api/catalogue"


def build_api(settings: Settings) -> FastAPI:
    app = make_api(
        settings,
        make_engine(settings.database_url),
        router,
        prefix=PREFIX,
        outbox=outbox,
        audit=audit_log,
        title="Tarjotin catalogue",
        description="Institutions, pricing guidelines, courses and offerings of the network. Reading is public; "
        "changes need a bearer token (network admin, or the providing institution's staff).",
    )
    app.state.facet_cache = FacetCache()
    app.state.search_cache = AnswerCache()
    return app


def build_worker(settings: Settings) -> list[Coroutine[Any, Any, None]]:
    return make_worker(
        settings,
        make_engine(settings.database_url),
        outbox=outbox,
        inbox=inbox,
        subscriptions=SUBSCRIPTIONS,
        idempotency_keys=idempotency_keys,
    )
