"""Billing HTTP routes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from services.billing import domain, handlers, views
from shared.events import Money
from shared.http import ListOf, Page, correlation_id
from shared.service import EngineDep

router = APIRouter()


class CommitmentRead(BaseModel):
    id: str
    enrolment_id: str
    offering_id: str
    payer_id: str
    payee_id: str
    amount: Money
    price_kind: str
    academic_year: str
    status: domain.Status
    decided_by: str | None
    reason: str | None
    created_at: datetime
    updated_at: datetime


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")
    decided_by: str = Field("counsellor", min_length=1, max_length=100)
    reason: str | None = Field(None, max_length=500)


class BulkAccept(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ids: list[str] = Field(min_length=1, max_length=1000)
    decided_by: str = Field("counsellor", min_length=1, max_length=100)


class PolicyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: domain.Mode
    yearly_budget: Money | None = Field(None, description="automatic mode only: beyond it, commitments wait")


class PolicyRead(PolicyBody):
    institution_id: str


@router.get("/commitments", response_model=ListOf[CommitmentRead], tags=["commitments"])
async def list_commitments(
    engine: EngineDep,
    page: Annotated[Page, Depends()],
    payer: str | None = None,
    payee: str | None = None,
    status: domain.Status | None = None,
    enrolment_id: str | None = None,
    academic_year: str | None = None,
) -> dict[str, Any]:
    filters = {
        "payer_id": payer,
        "payee_id": payee,
        "status": status,
        "enrolment_id": enrolment_id,
        "academic_year": academic_year,
    }
    async with engine.connect() as conn:
        total, items = await views.list_commitments(conn, filters=filters, offset=page.offset, limit=page.page_size)
    return {"total": total, "page": page.page, "page_size": page.page_size, "items": items}


@router.get("/commitments/{commitment_id}", response_model=CommitmentRead, tags=["commitments"])
async def get_commitment(commitment_id: str, engine: EngineDep) -> dict[str, Any]:
    async with engine.connect() as conn:
        return await views.get_commitment(conn, commitment_id)


@router.post("/commitments/accept", response_model=list[CommitmentRead], tags=["commitments"])
async def accept_many(body: BulkAccept, request: Request, engine: EngineDep) -> list[dict[str, Any]]:
    """Accept several pending commitments at once: all or none."""
    async with engine.begin() as conn:
        return [
            await handlers.decide(conn, cid, accept=True, by=body.decided_by, correlation_id=correlation_id(request))
            for cid in dict.fromkeys(body.ids)
        ]


@router.post("/commitments/{commitment_id}/accept", response_model=CommitmentRead, tags=["commitments"])
async def accept(
    commitment_id: str, request: Request, engine: EngineDep, body: Decision | None = None
) -> dict[str, Any]:
    decision = body or Decision()
    async with engine.begin() as conn:
        return await handlers.decide(
            conn,
            commitment_id,
            accept=True,
            by=decision.decided_by,
            correlation_id=correlation_id(request),
            reason=decision.reason,
        )


@router.post("/commitments/{commitment_id}/reject", response_model=CommitmentRead, tags=["commitments"])
async def reject(
    commitment_id: str, request: Request, engine: EngineDep, body: Decision | None = None
) -> dict[str, Any]:
    """Reject a pending commitment: the enrolment is rejected and its seat goes to the waitlist."""
    decision = body or Decision()
    async with engine.begin() as conn:
        return await handlers.decide(
            conn,
            commitment_id,
            accept=False,
            by=decision.decided_by,
            correlation_id=correlation_id(request),
            reason=decision.reason,
        )


@router.get("/policies/{institution_id}", response_model=PolicyRead, tags=["policies"])
async def get_policy(institution_id: str, engine: EngineDep) -> dict[str, Any]:
    async with engine.connect() as conn:
        return await views.policy_for(conn, institution_id)


@router.put("/policies/{institution_id}", response_model=PolicyRead, tags=["policies"])
async def put_policy(institution_id: str, body: PolicyBody, engine: EngineDep) -> dict[str, Any]:
    async with engine.begin() as conn:
        return await handlers.set_policy(conn, institution_id, body.mode, body.yearly_budget)
