"""Routes: courses (provider staff)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from services.catalogue import handlers, views
from services.catalogue.api.common import IdempotencyKey, PageDep, create_once
from services.catalogue.api.models import CourseCreate, CoursePatch, CourseRead
from shared.http import ListOf, correlation_id
from shared.service import EngineDep

router = APIRouter(tags=["courses"])


@router.post("/courses", status_code=201, response_model=CourseRead)
async def create_course(
    body: CourseCreate, request: Request, engine: EngineDep, key: IdempotencyKey = None
) -> JSONResponse:
    cmd = handlers.CreateCourse(**body.model_dump())
    return await create_once(request, engine, key, body, lambda conn: handlers.create_course(conn, cmd), CourseRead)


@router.get("/courses", response_model=ListOf[CourseRead])
async def list_courses(engine: EngineDep, page: PageDep, provider: str | None = None) -> dict[str, Any]:
    async with engine.connect() as conn:
        total, items = await views.list_courses(conn, provider=provider, offset=page.offset, limit=page.page_size)
    return {"total": total, "page": page.page, "page_size": page.page_size, "items": items}


@router.get("/courses/{course_id}", response_model=CourseRead)
async def get_course(course_id: str, engine: EngineDep) -> dict[str, Any]:
    async with engine.connect() as conn:
        return await views.get_course(conn, course_id)


@router.patch("/courses/{course_id}", response_model=CourseRead)
async def update_course(course_id: str, body: CoursePatch, request: Request, engine: EngineDep) -> dict[str, Any]:
    """Change some fields; each published offering of the course whose shown fields change gets `offering.updated`."""
    async with engine.begin() as conn:
        return await handlers.update_course(conn, course_id, body.changes(), correlation_id(request))
