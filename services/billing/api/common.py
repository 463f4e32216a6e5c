"""What the billing routes share: who may call them, paging, the clock, retries, Idempotency-Key."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date
from typing import Annotated, TypeVar

from fastapi import Depends, Header, Request
from sqlalchemy.exc import DBAPIError

from services.billing import handlers
from shared.auth import Principal, Role, require
from shared.http import PageDep as PageDep

IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)]

# Counsellors and finance staff act for one institution (tenant rules in `services.billing.access`).
Staff = Annotated[Principal, Depends(require(Role.COUNSELLOR, Role.FINANCE, Role.NETWORK_ADMIN))]
FinanceStaff = Annotated[Principal, Depends(require(Role.FINANCE, Role.NETWORK_ADMIN))]
NetworkAdmin = Annotated[Principal, Depends(require(Role.NETWORK_ADMIN))]


async def _today(request: Request) -> date:
    """Async, as every dependency here: FastAPI runs a plain function in a worker thread, a round trip
    per request (tests/unit/test_http_guards.py checks every route)."""
    clock: Callable[[], date] = getattr(request.app.state, "today", handlers.utc_today)
    return clock()


Today = Annotated[date, Depends(_today)]
T = TypeVar("T")
DEADLOCK, SERIALIZATION_FAILURE = "40P01", "40001"


async def retrying_conflicts(work: Callable[[], Awaitable[T]], attempts: int = 3) -> T:
    """Run a transaction again when PostgreSQL chose it as a deadlock victim (it locks many rows at once)."""
    for attempt in range(1, attempts + 1):
        try:
            return await work()
        except DBAPIError as exc:
            if attempt == attempts or getattr(exc.orig, "sqlstate", None) not in (DEADLOCK, SERIALIZATION_FAILURE):
                raise
    raise AssertionError("unreachable")
