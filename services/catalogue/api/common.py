"""What every catalogue route module shares: headers, pagination, the audited write, the once-per-key creating POST."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.catalogue.tables import audit_log, idempotency_keys
from shared import audit
from shared.auth import Principal
from shared.http import PageDep as PageDep
from shared.idempotency import run_once, scoped_key
from shared.service import EngineDep

IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)]


async def record(conn: AsyncConnection, caller: Principal, action: str, target_id: str | None) -> None:
    """The audit row of a change, in the change's own transaction."""
    await audit.record(conn, audit_log, caller, action, target_id)


@asynccontextmanager
async def audited(
    engine: AsyncEngine, caller: Principal, action: str, target_id: str | None
) -> AsyncIterator[AsyncConnection]:
    """One transaction for a change of `target_id`, with its audit row: both are committed, or neither."""
    async with engine.begin() as conn:
        yield conn
        await record(conn, caller, action, target_id)


async def create_once(
    request: Request,
    engine: EngineDep,
    caller: Principal,
    key: str | None,
    body: BaseModel,
    work: Callable[[AsyncConnection], Awaitable[dict[str, Any]]],
    read_model: type[BaseModel],
    action: str,
) -> JSONResponse:
    """Run a creating use case once per caller and Idempotency-Key, audited as `action` on the new id:
    201, or 200 with the stored answer on a replay (which neither runs nor audits anything again)."""

    async def run(conn: AsyncConnection) -> tuple[int, dict[str, Any]]:
        data = await work(conn)
        await record(conn, caller, action, str(data["id"]))
        return 201, read_model.model_validate(data).model_dump(mode="json")

    scoped = scoped_key(f"{request.method} {request.url.path}", caller.subject, key)
    status, payload, replayed = await run_once(engine, idempotency_keys, scoped, body.model_dump(mode="json"), run)
    return JSONResponse(payload, status_code=200 if replayed else status)
