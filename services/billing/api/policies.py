"""Commitment policy routes: an institution's staff read theirs; the network admin sets them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from services.billing import access, handlers, views
from services.billing.api.common import NetworkAdmin, Staff
from services.billing.api.schemas import PolicyBody, PolicyRead
from services.billing.tables import audit_log
from shared import audit
from shared.http import problem_responses
from shared.service import EngineDep

router = APIRouter(tags=["policies"])
RESPONSES = problem_responses(401, 403, 404)


@router.get("/policies/{institution_id}", response_model=PolicyRead, responses=RESPONSES)
async def get_policy(institution_id: str, caller: Staff, engine: EngineDep) -> dict[str, Any]:
    """The institution's commitment mode and yearly budget (its own counsellors and finance staff)."""
    access.check_policy_visible(caller, institution_id)
    async with engine.connect() as conn:
        return await views.policy_for(conn, institution_id)


@router.put("/policies/{institution_id}", response_model=PolicyRead, responses=RESPONSES)
async def put_policy(institution_id: str, body: PolicyBody, caller: NetworkAdmin, engine: EngineDep) -> dict[str, Any]:
    """Set how the institution's commitments are accepted (network admin)."""
    async with engine.begin() as conn:
        policy = await handlers.set_policy(conn, institution_id, body.mode, body.yearly_budget)
        await audit.record(conn, audit_log, caller, "policy.set", institution_id)
    return policy
