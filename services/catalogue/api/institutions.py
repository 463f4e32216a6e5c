"""Routes: institutions and the pricing guideline (network admin; reading is public)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from services.catalogue import domain, handlers, views
from services.catalogue.api.access import WRITE_BY_ID_RESPONSES, WRITE_RESPONSES, Admin
from services.catalogue.api.common import IdempotencyKey, PageDep, audited, create_once
from services.catalogue.api.models import GuidelineBody, InstitutionCreate, InstitutionPatch, InstitutionRead
from shared.http import ListOf, correlation_id, problem_responses
from shared.service import EngineDep

router = APIRouter()


@router.post(
    "/institutions",
    status_code=201,
    response_model=InstitutionRead,
    tags=["institutions"],
    responses=problem_responses(401, 403, 409),
)
async def register_institution(
    body: InstitutionCreate, request: Request, engine: EngineDep, caller: Admin, key: IdempotencyKey = None
) -> JSONResponse:
    """Register a member or outside institution (network admin); publishes `institution.registered`."""
    cmd = handlers.RegisterInstitution(**{**body.model_dump(), "names": body.names.model_dump()})
    return await create_once(
        request,
        engine,
        caller,
        key,
        body,
        lambda conn: handlers.register_institution(conn, cmd, correlation_id(request)),
        InstitutionRead,
        "institution.create",
    )


@router.get("/institutions", response_model=ListOf[InstitutionRead], tags=["institutions"])
async def list_institutions(engine: EngineDep, page: PageDep, member: bool | None = None) -> dict[str, Any]:
    """Every registered institution (public)."""
    async with engine.connect() as conn:
        total, items = await views.list_institutions(conn, member=member, offset=page.offset, limit=page.page_size)
    return {"total": total, "page": page.page, "page_size": page.page_size, "items": items}


@router.get(
    "/institutions/{institution_id}",
    response_model=InstitutionRead,
    tags=["institutions"],
    responses=problem_responses(404),
)
async def get_institution(institution_id: str, engine: EngineDep) -> dict[str, Any]:
    """One institution (public)."""
    async with engine.connect() as conn:
        return await views.get_institution(conn, institution_id)


@router.patch(
    "/institutions/{institution_id}",
    response_model=InstitutionRead,
    tags=["institutions"],
    responses=WRITE_BY_ID_RESPONSES,
)
async def update_institution(
    institution_id: str, body: InstitutionPatch, request: Request, engine: EngineDep, caller: Admin
) -> dict[str, Any]:
    """Change some fields (network admin); publishes `institution.updated` with the whole new state (nothing if
    nothing changed)."""
    async with audited(engine, caller, "institution.update", institution_id) as conn:
        return await handlers.update_institution(conn, institution_id, body.changes(), correlation_id(request))


@router.get("/pricing-guidelines/{academic_year}", response_model=GuidelineBody, tags=["pricing"])
async def get_guideline(academic_year: str, engine: EngineDep) -> dict[str, Any]:
    """The year's guideline, or the network's default until one is set (public)."""
    domain.check_academic_year(academic_year)
    async with engine.connect() as conn:
        guideline = await views.guideline_for(conn, academic_year)
    return guideline.__dict__


@router.put(
    "/pricing-guidelines/{academic_year}", response_model=GuidelineBody, tags=["pricing"], responses=WRITE_RESPONSES
)
async def put_guideline(
    academic_year: str, body: GuidelineBody, request: Request, engine: EngineDep, caller: Admin
) -> GuidelineBody:
    """Set the year's guideline (network admin); publishes `pricing_guideline.set`. Existing offerings keep their
    prices."""
    guideline = domain.Guideline(**{name: getattr(body, name) for name in GuidelineBody.model_fields})
    async with audited(engine, caller, "pricing_guideline.set", academic_year) as conn:
        await handlers.set_pricing_guideline(conn, academic_year, guideline, correlation_id(request))
    return body
