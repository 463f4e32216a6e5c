"""Commitment routes: listing and reading what the caller's institution pays or is owed, and the
payer's decisions (one by one or in bulk), each audited in its own transaction."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.billing import access, domain, handlers, views
from services.billing.api.common import PageDep, Staff, retrying_conflicts
from services.billing.api.schemas import BulkAccept, BulkReject, CommitmentRead, Decision
from services.billing.tables import audit_log, commitments
from shared import audit
from shared.auth import Principal
from shared.errors import NotFound
from shared.http import ListOf, correlation_id, problem_responses
from shared.service import EngineDep

router = APIRouter(tags=["commitments"])
READ_RESPONSES = problem_responses(401, 403, 404)
DECISION_RESPONSES = problem_responses(401, 403, 404, 409)


@router.get("/commitments", response_model=ListOf[CommitmentRead], responses=problem_responses(401, 403))
async def list_commitments(
    caller: Staff,
    engine: EngineDep,
    page: PageDep,
    payer: str | None = None,
    payee: str | None = None,
    status: domain.Status | None = None,
    enrolment_id: str | None = None,
    academic_year: str | None = None,
) -> dict[str, Any]:
    """Commitments the caller's institution pays or is owed (all of them for the network admin)."""
    filters = {
        "payer_id": payer,
        "payee_id": payee,
        "status": status,
        "enrolment_id": enrolment_id,
        "academic_year": academic_year,
    }
    async with engine.connect() as conn:
        total, items = await views.list_commitments(
            conn,
            filters=filters,
            offset=page.offset,
            limit=page.page_size,
            where=access.scope(caller, commitments),
        )
    return {"total": total, "page": page.page, "page_size": page.page_size, "items": items}


@router.get("/commitments/{commitment_id}", response_model=CommitmentRead, responses=READ_RESPONSES)
async def get_commitment(commitment_id: str, caller: Staff, engine: EngineDep) -> dict[str, Any]:
    async with engine.connect() as conn:
        commitment = await views.get_commitment(conn, commitment_id)
    if not access.sees(caller, commitment["payer_id"], commitment["payee_id"]):
        raise NotFound(f"Commitment {commitment_id!r} does not exist.")
    return commitment


async def _decide(
    conn: AsyncConnection,
    caller: Principal,
    ids: list[str],
    *,
    accept: bool,
    by: str | None,
    correlation: str,
    reason: str | None = None,
    bulk: bool = True,
) -> list[dict[str, Any]]:
    """Check the caller may decide every one of `ids`, decide them all, and audit each, in one transaction."""
    access.check_decisions(caller, ids, await views.commitment_parties(conn, ids), accept)
    by = by or caller.role.value
    if bulk:
        decided = await handlers.decide_many(conn, ids, accept=accept, by=by, correlation_id=correlation, reason=reason)
    else:
        decided = [await handlers.decide(conn, ids[0], accept=accept, by=by, correlation_id=correlation, reason=reason)]
    action = "commitment.accept" if accept else "commitment.reject"
    for commitment in decided:
        await audit.record(conn, audit_log, caller, action, commitment["id"])
    return decided


@router.post("/commitments/accept", response_model=list[CommitmentRead], responses=DECISION_RESPONSES)
async def accept_many(body: BulkAccept, caller: Staff, request: Request, engine: EngineDep) -> list[dict[str, Any]]:
    """Accept several pending commitments the caller's institution pays: all or none (404 names ids it
    cannot see, 403 those it is only the provider of, 409 those not pending)."""
    ids = list(dict.fromkeys(body.ids))

    async def work() -> list[dict[str, Any]]:
        async with engine.begin() as conn:
            return await _decide(
                conn, caller, ids, accept=True, by=body.decided_by, correlation=correlation_id(request)
            )

    return await retrying_conflicts(work)


@router.post("/commitments/reject", response_model=list[CommitmentRead], responses=DECISION_RESPONSES)
async def reject_many(body: BulkReject, caller: Staff, request: Request, engine: EngineDep) -> list[dict[str, Any]]:
    """Reject several pending commitments the caller's institution pays: all or none (404 names ids it
    cannot see, 403 those it is only the provider of, 409 those not pending)."""
    ids = list(dict.fromkeys(body.ids))

    async def work() -> list[dict[str, Any]]:
        async with engine.begin() as conn:
            return await _decide(
                conn,
                caller,
                ids,
                accept=False,
                by=body.decided_by,
                correlation=correlation_id(request),
                reason=body.reason,
            )

    return await retrying_conflicts(work)


@router.post("/commitments/{commitment_id}/accept", response_model=CommitmentRead, responses=DECISION_RESPONSES)
async def accept(
    commitment_id: str, caller: Staff, request: Request, engine: EngineDep, body: Decision | None = None
) -> dict[str, Any]:
    """Accept a pending commitment of the caller's institution: the enrolment is confirmed."""
    return await _decide_one(engine, caller, request, commitment_id, body, accept=True)


@router.post("/commitments/{commitment_id}/reject", response_model=CommitmentRead, responses=DECISION_RESPONSES)
async def reject(
    commitment_id: str, caller: Staff, request: Request, engine: EngineDep, body: Decision | None = None
) -> dict[str, Any]:
    """Reject a pending commitment: the enrolment is rejected and its seat goes to the waitlist."""
    return await _decide_one(engine, caller, request, commitment_id, body, accept=False)


async def _decide_one(
    engine: AsyncEngine, caller: Principal, request: Request, commitment_id: str, body: Decision | None, *, accept: bool
) -> dict[str, Any]:
    decision = body or Decision()
    async with engine.begin() as conn:
        (decided,) = await _decide(
            conn,
            caller,
            [commitment_id],
            accept=accept,
            by=decision.decided_by,
            correlation=correlation_id(request),
            reason=decision.reason,
            bulk=False,
        )
    return decided
