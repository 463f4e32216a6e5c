"""Composition root of the enrolment: settings → engine → API and worker (relay, consumer)."""

from __future__ import annotations

from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from services.enrolment.api import router
from services.enrolment.consumers import SUBSCRIPTIONS
from services.enrolment.settings import Settings
from services.enrolment.tables import audit_log, idempotency_keys, inbox, outbox
from shared.db import make_engine
from shared.service import make_api, make_worker

MIGRATIONS = Path(__file__).parent / "migrations"
PREFIX = "/api/enrolments"


def build_api(settings: Settings) -> FastAPI:
    return make_api(
        settings,
        make_engine(settings.database_url),
        router,
        prefix=PREFIX,
        outbox=outbox,
        audit=audit_log,
        title="Tarjotin enrolment",
        description="Students, enrolments, seats and waitlists. Personal data stays here.",
    )


def build_worker(settings: Settings) -> list[Coroutine[Any, Any, None]]:
    return make_worker(
        settings,
        make_engine(settings.database_url),
        outbox=outbox,
        inbox=inbox,
        subscriptions=SUBSCRIPTIONS,
        idempotency_keys=idempotency_keys,
    )
