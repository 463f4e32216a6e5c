"""The audit log: who did what, when, for every state-changing request.

Each service keeps its own append-only `audit_log` table and writes the row in the same transaction
as the change it describes, so the log never shows a change that did not happen or misses one that
did. Network admins read it at `GET <prefix>/audit-log`. Rows name the actor by the token's subject,
role and institution; they never copy request bodies (no personal data beyond the actor).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

import sqlalchemy as sa
import structlog
from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.auth import Principal, Role, require
from shared.db import UTCDateTime, plain_insert
from shared.http import ListOf, PageDep


def add_audit_table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        "audit_log",
        metadata,
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("actor_role", sa.String(30), nullable=False),
        sa.Column("actor_institution_id", sa.String(64), nullable=True),
        sa.Column("action", sa.String(100), nullable=False),
        sa.Column("target_id", sa.String(200), nullable=True),
        sa.Column("request_id", sa.String(100), nullable=True),
        sa.Index("ix_audit_log_at", "at"),
        sa.Index("ix_audit_log_actor", "actor"),
    )


def row(caller: Principal, action: str, target_id: str | None) -> dict[str, Any]:
    """One audit row (for `record`, or for a `shared.db.Writes` that sends it with a later statement)."""
    return {
        "id": str(uuid.uuid4()),
        "at": datetime.now(UTC),
        "action": action,
        "target_id": target_id,
        "request_id": structlog.contextvars.get_contextvars().get("request_id"),
        **caller.audit_fields(),
    }


async def record(conn: AsyncConnection, table: sa.Table, caller: Principal, action: str, target_id: str | None) -> None:
    """Append one audit row inside the caller's transaction."""
    await conn.execute(plain_insert(table), row(caller, action, target_id))


class AuditEntry(BaseModel):
    id: str
    at: datetime
    actor: str
    actor_role: str
    actor_institution_id: str | None
    action: str
    target_id: str | None
    request_id: str | None


def _utc(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def audit_router(table: sa.Table) -> APIRouter:
    """`GET /audit-log`: newest first, filterable; network admins only."""
    router = APIRouter(tags=["audit"])

    @router.get("/audit-log", response_model=ListOf[AuditEntry], summary="Audit log (network admins)")
    async def audit_log(
        request: Request,
        _caller: Annotated[Principal, Depends(require(Role.NETWORK_ADMIN))],
        page: PageDep,
        actor: Annotated[str | None, Query(max_length=200)] = None,
        institution_id: Annotated[str | None, Query(max_length=64)] = None,
        action: Annotated[str | None, Query(max_length=100)] = None,
        target_id: Annotated[str | None, Query(max_length=200)] = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> dict[str, Any]:
        since, until = (_utc(v) for v in (since, until))
        conditions = []
        if actor:
            conditions.append(table.c.actor == actor)
        if institution_id:
            conditions.append(table.c.actor_institution_id == institution_id)
        if action:
            conditions.append(table.c.action == action)
        if target_id:
            conditions.append(table.c.target_id == target_id)
        if since:
            conditions.append(table.c.at >= since)
        if until:
            conditions.append(table.c.at < until)
        where = sa.and_(sa.true(), *conditions)
        async with request.app.state.engine.connect() as conn:
            total = (await conn.execute(sa.select(sa.func.count()).select_from(table).where(where))).scalar_one()
            rows = await conn.execute(
                sa.select(table)
                .where(where)
                .order_by(table.c.at.desc(), table.c.id)
                .offset(page.offset)
                .limit(page.page_size)
            )
            items = [dict(row._mapping) for row in rows]
        return {"total": total, "page": page.page, "page_size": page.page_size, "items": items}

    return router
