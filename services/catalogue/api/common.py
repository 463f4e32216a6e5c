"""What every catalogue route module shares: headers, pagination, the once-per-key creating POST."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncConnection

from services.catalogue.tables import idempotency_keys
from shared.http import Page
from shared.idempotency import run_once
from shared.service import EngineDep

IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)]
PageDep = Annotated[Page, Depends()]


async def create_once(
    request: Request,
    engine: EngineDep,
    key: str | None,
    body: BaseModel,
    work: Callable[[AsyncConnection], Awaitable[dict[str, Any]]],
    read_model: type[BaseModel],
) -> JSONResponse:
    """Run a creating use case once per Idempotency-Key: 201, or 200 with the stored answer on a replay."""

    async def run(conn: AsyncConnection) -> tuple[int, dict[str, Any]]:
        data = await work(conn)
        return 201, read_model.model_validate(data).model_dump(mode="json")

    scoped = f"{request.method} {request.url.path}:{key}" if key else None
    status, payload, replayed = await run_once(engine, idempotency_keys, scoped, body.model_dump(mode="json"), run)
    return JSONResponse(payload, status_code=200 if replayed else status)
