"""Routes: courses (the provider's staff or the network admin; reading is public)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from services.catalogue import handlers, views
from services.catalogue.api.access import WRITE_BY_ID_RESPONSES, ProviderStaff, check_provider
from services.catalogue.api.common import IdempotencyKey, PageDep, audited, create_once
from services.catalogue.api.models import CourseCreate, CoursePatch, CourseRead
from shared.http import ListOf, correlation_id, problem_responses
from shared.service import EngineDep

router = APIRouter(tags=["courses"])


@router.post("/courses", status_code=201, response_model=CourseRead, responses=problem_responses(401, 403, 404, 409))
async def create_course(
    body: CourseCreate, request: Request, engine: EngineDep, caller: ProviderStaff, key: IdempotencyKey = None
) -> JSONResponse:
    """Create a course of `provider_id` (its provider staff, or the network admin)."""
    check_provider(caller, body.provider_id)
    cmd = handlers.CreateCourse(**body.model_dump())
    return await create_once(
        request, engine, caller, key, body, lambda conn: handlers.create_course(conn, cmd), CourseRead, "course.create"
    )


@router.get("/courses", response_model=ListOf[CourseRead])
async def list_courses(engine: EngineDep, page: PageDep, provider: str | None = None) -> dict[str, Any]:
    """Courses, optionally of one provider (public)."""
    async with engine.connect() as conn:
        total, items = await views.list_courses(conn, provider=provider, offset=page.offset, limit=page.page_size)
    return {"total": total, "page": page.page, "page_size": page.page_size, "items": items}


@router.get("/courses/{course_id}", response_model=CourseRead, responses=problem_responses(404))
async def get_course(course_id: str, engine: EngineDep) -> dict[str, Any]:
    """One course (public)."""
    async with engine.connect() as conn:
        return await views.get_course(conn, course_id)


@router.patch("/courses/{course_id}", response_model=CourseRead, responses=WRITE_BY_ID_RESPONSES)
async def update_course(
    course_id: str, body: CoursePatch, request: Request, engine: EngineDep, caller: ProviderStaff
) -> dict[str, Any]:
    """Change some fields (the provider's staff, or the network admin); each published offering of the course
    whose shown fields change gets `offering.updated`."""
    async with audited(engine, caller, "course.update", course_id) as conn:
        check_provider(caller, (await views.get_course(conn, course_id))["provider_id"])
        return await handlers.update_course(conn, course_id, body.changes(), correlation_id(request))
