"""Composition root of the billing: settings → engine → API and worker (relay, consumer, deadline clock)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from datetime import date
from pathlib import Path
from typing import Any

import structlog
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from services.billing import handlers
from services.billing.api import router
from services.billing.consumers import SUBSCRIPTIONS
from services.billing.settings import Settings
from services.billing.tables import audit_log, idempotency_keys, inbox, outbox
from shared.db import make_engine
from shared.service import make_api, make_worker

MIGRATIONS = Path(__file__).parent / "migrations"
PREFIX = "/api/billing"
log = structlog.get_logger("billing")


def build_api(settings: Settings, today: Callable[[], date] = handlers.utc_today) -> FastAPI:
    app = make_api(
        settings,
        make_engine(settings.database_url),
        router,
        prefix=PREFIX,
        outbox=outbox,
        audit=audit_log,
        title="Tarjotin billing",
        description="Payment commitments (maksusitoumus), commitment policies, invoices and credit notes.",
    )
    app.state.today = today
    return app


async def charge_due_loop(
    engine: AsyncEngine, interval_s: float, today: Callable[[], date] = handlers.utc_today
) -> None:
    """Every `interval_s`: accepted commitments past their free-cancellation deadline become chargeable."""
    while True:
        try:
            async with engine.begin() as conn:
                changed = await handlers.charge_due(conn, today())
            if changed:
                log.info("commitments chargeable after their deadline", count=changed)
        except Exception as exc:  # the database may be away for a while; the next round tries again
            log.warning("charging due commitments failed", error=repr(exc))
        await asyncio.sleep(interval_s)


def build_worker(
    settings: Settings, engine: AsyncEngine | None = None, today: Callable[[], date] = handlers.utc_today
) -> list[Coroutine[Any, Any, None]]:
    """Relay, consumer and the deadline clock. `engine`: the API's, when both run in one process (`all`)."""
    engine = engine or make_engine(settings.database_url)
    loops = make_worker(
        settings,
        engine,
        outbox=outbox,
        inbox=inbox,
        subscriptions=SUBSCRIPTIONS,
        idempotency_keys=idempotency_keys,
    )
    return [*loops, charge_due_loop(engine, settings.charge_due_interval_s, today)]
