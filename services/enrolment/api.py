"""Enrolment HTTP routes."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, EmailStr, Field
from sqlalchemy.ext.asyncio import AsyncConnection

from services.enrolment import handlers, views
from services.enrolment.domain import Outcome, Status
from services.enrolment.tables import idempotency_keys
from shared.http import ListOf, Page, correlation_id
from shared.idempotency import run_once
from shared.service import EngineDep

router = APIRouter(tags=["enrolments"])


class StudentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    learner_id: str = Field(min_length=1, max_length=100, description="the home institution's learner id")
    name: str = Field(min_length=1, max_length=200)
    email: EmailStr = Field(max_length=254)


class EnrolmentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    offering_id: str = Field(min_length=1, max_length=64)
    home_institution_id: str = Field(min_length=1, max_length=64)
    student: StudentIn


class WithdrawBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    by: str = Field("student", min_length=1, max_length=100, description="who withdrew: student or counsellor")


class ResultBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    outcome: Outcome
    grade: str | None = Field(None, max_length=20, description="e.g. 4-10, 1-5, S (pass)")
    credits: Decimal | None = Field(
        None, ge=0, le=100, decimal_places=1, description="credits earned; defaults to the course's when passed"
    )


class EnrolmentRead(BaseModel):
    id: str
    offering_id: str
    home_institution_id: str
    status: Status
    waitlist_position: int | None
    student_ref: str
    student: StudentIn
    commitment_id: str | None
    grade: str | None = None
    credits_earned: Decimal | None = None
    created_at: datetime
    updated_at: datetime


@router.post("", status_code=201, response_model=EnrolmentRead)
async def request_enrolment(
    body: EnrolmentCreate,
    request: Request,
    engine: EngineDep,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)] = None,
) -> JSONResponse:
    """Enrol a student: holds a seat (`awaiting_commitment`) or waitlists; enrolling again returns the same one."""
    cmd = handlers.RequestEnrolment(
        offering_id=body.offering_id,
        home_institution_id=body.home_institution_id,
        student=handlers.Student(**body.student.model_dump()),
    )

    async def work(conn: AsyncConnection) -> tuple[int, dict[str, Any]]:
        created, data = await handlers.request_enrolment(conn, cmd, correlation_id(request))
        return (201 if created else 200), EnrolmentRead.model_validate(data).model_dump(mode="json")

    key = f"enrolment:{idempotency_key}" if idempotency_key else None
    status, payload, replayed = await run_once(engine, idempotency_keys, key, body.model_dump(mode="json"), work)
    return JSONResponse(
        payload,
        status_code=200 if replayed else status,
        headers={"Location": f"/api/enrolments/{payload['id']}"},
    )


router.add_api_route("/", request_enrolment, methods=["POST"], status_code=201, include_in_schema=False)


@router.get("", response_model=ListOf[EnrolmentRead])
async def list_enrolments(
    engine: EngineDep,
    page: Annotated[Page, Depends()],
    offering_id: str | None = None,
    home_institution_id: str | None = None,
    status: Status | None = None,
) -> dict[str, Any]:
    filters = {"offering_id": offering_id, "home_institution_id": home_institution_id, "status": status}
    async with engine.connect() as conn:
        total, items = await views.list_enrolments(conn, filters=filters, offset=page.offset, limit=page.page_size)
    return {"total": total, "page": page.page, "page_size": page.page_size, "items": items}


router.add_api_route("/", list_enrolments, methods=["GET"], include_in_schema=False)


@router.get("/{enrolment_id}", response_model=EnrolmentRead)
async def get_enrolment(enrolment_id: str, engine: EngineDep) -> dict[str, Any]:
    async with engine.connect() as conn:
        return await views.get_enrolment(conn, enrolment_id)


@router.post("/{enrolment_id}/withdraw", response_model=EnrolmentRead)
async def withdraw(
    enrolment_id: str, request: Request, engine: EngineDep, body: WithdrawBody | None = None
) -> dict[str, Any]:
    """Withdraw: free before the free-cancellation deadline, charged after it; the seat goes to the waitlist."""
    cmd = handlers.Withdraw(enrolment_id=enrolment_id, by=(body or WithdrawBody()).by)
    async with engine.begin() as conn:
        return await handlers.withdraw(conn, cmd, correlation_id(request))


@router.post("/{enrolment_id}/result", response_model=EnrolmentRead)
async def record_result(enrolment_id: str, body: ResultBody, request: Request, engine: EngineDep) -> dict[str, Any]:
    """Record the provider's result (passed, failed, interrupted); publishes `enrolment.completed`."""
    cmd = handlers.RecordResult(enrolment_id=enrolment_id, outcome=body.outcome, grade=body.grade, credits=body.credits)
    async with engine.begin() as conn:
        return await handlers.record_result(conn, cmd, correlation_id(request))
