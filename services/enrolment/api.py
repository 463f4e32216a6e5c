"""Enrolment HTTP routes. Every route needs a token; what a caller may not see answers 404."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Header, Request, Response
from pydantic import BaseModel, ConfigDict, EmailStr, Field
from sqlalchemy.ext.asyncio import AsyncConnection

from services.enrolment import access, handlers, views
from services.enrolment.domain import Outcome, Status
from services.enrolment.tables import audit_log, idempotency_keys
from shared import audit
from shared.auth import Principal, Role, require
from shared.db import Writes
from shared.http import AUTH_RESPONSES, ListOf, PageDep, correlation_id, problem_responses
from shared.idempotency import Answer, fingerprint, run_once_raw, scoped_key
from shared.service import EngineDep

router = APIRouter(tags=["enrolments"])

WITH_404 = problem_responses(401, 403, 404)

Enroller = Annotated[Principal, Depends(require(Role.STUDENT, Role.COUNSELLOR, Role.NETWORK_ADMIN))]
# Who may be shown enrolments at all; which ones is access.enrolment_scope.
Viewer = Annotated[Principal, Depends(require(Role.STUDENT, Role.COUNSELLOR, Role.PROVIDER_STAFF, Role.NETWORK_ADMIN))]
StudentCaller = Annotated[Principal, Depends(require(Role.STUDENT))]
DataController = Annotated[Principal, Depends(require(Role.COUNSELLOR, Role.NETWORK_ADMIN))]


class StudentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    learner_id: str = Field(min_length=1, max_length=100, description="the home institution's learner id")
    name: str = Field(min_length=1, max_length=200)
    email: EmailStr = Field(max_length=254)


class StudentRead(BaseModel):
    learner_id: str | None = Field(description="null once the student's personal data was erased")
    name: str | None
    email: str | None
    erased: bool = Field(False, description="true once the personal data was erased; the student_ref stays")


class EnrolmentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    offering_id: str = Field(min_length=1, max_length=64)
    home_institution_id: str = Field(min_length=1, max_length=64)
    student: StudentIn


class WithdrawBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    by: str | None = Field(
        None,
        min_length=1,
        max_length=100,
        description="who withdrew; taken from the token for students and counsellors, a network admin may say",
    )


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
    student: StudentRead
    commitment_id: str | None
    grade: str | None = None
    credits_earned: Decimal | None = None
    created_at: datetime
    updated_at: datetime


class EnrolmentRecord(BaseModel):
    """One enrolment in a student's data export."""

    id: str
    offering_id: str
    offering_title: str
    provider_id: str
    academic_year: str
    home_institution_id: str
    status: Status
    waitlist_position: int | None
    commitment_id: str | None
    withdrawn_by: str | None
    grade: str | None
    credits_earned: Decimal | None
    created_at: datetime
    updated_at: datetime


class StudentExport(BaseModel):
    """Everything the enrolment service holds about one student."""

    student_ref: str | None = Field(description="the pseudonymous reference events use; null if nothing is held")
    home_institution_id: str
    learner_id: str | None
    name: str | None
    email: str | None
    erased: bool
    erased_at: datetime | None
    exported_at: datetime
    enrolments: list[EnrolmentRecord]


@router.post("", status_code=201, response_model=EnrolmentRead, responses=AUTH_RESPONSES)
async def request_enrolment(
    body: EnrolmentCreate,
    request: Request,
    engine: EngineDep,
    caller: Enroller,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)] = None,
) -> Response:
    """Enrol a student: holds a seat (`awaiting_commitment`) or waitlists; enrolling again returns the same one.

    A student enrols only themself, a counsellor only their own institution's students."""
    # The hot route of an opening-day rush: the answer is written once as JSON bytes (stored as they are
    # for Idempotency-Key replays) instead of going through the response model.
    access.check_may_request(caller, body.home_institution_id, body.student.learner_id)
    student = body.student
    cmd = handlers.RequestEnrolment(
        offering_id=body.offering_id,
        home_institution_id=body.home_institution_id,
        student=handlers.Student(learner_id=student.learner_id, name=student.name, email=student.email),
    )

    answered: list[str] = []

    async def work(conn: AsyncConnection, answer: Answer) -> tuple[int, bytes]:
        early: list[tuple[dict[str, Any], bytes]] = []

        async def before_seat(seated: dict[str, Any], writes: Writes) -> None:  # before the seat lock (see the handler)
            await writes.insert(audit_log, audit.row(caller, "enrolment.request", seated["id"]))
            body = orjson.dumps(seated, option=orjson.OPT_UTC_Z)  # EnrolmentRead's shape, built by the handler
            await answer.store(writes, 201, body)
            early.append((seated, body))

        created, data = await handlers.request_enrolment(conn, cmd, correlation_id(request), before_seat=before_seat)
        answered.append(data["id"])
        if early and early[0][0] is data:  # seated, as answered early
            return 201, early[0][1]
        if not early:  # an enrolment already active: the request is audited all the same
            await audit.record(conn, audit_log, caller, "enrolment.request", data["id"])
        if created:  # waitlisted instead
            return 201, orjson.dumps(data, option=orjson.OPT_UTC_Z)
        return 200, EnrolmentRead.model_validate(data).model_dump_json().encode()

    key = scoped_key("enrolment", caller.subject, idempotency_key)
    print_ = fingerprint(body.model_dump()) if key is not None else ""
    status, payload, replayed = await run_once_raw(engine, idempotency_keys, key, print_, work)
    enrolment_id = orjson.loads(payload)["id"] if replayed else answered[-1]
    return Response(
        payload,
        status_code=200 if replayed else status,
        media_type="application/json",
        headers={"Location": f"/api/enrolments/{enrolment_id}"},
    )


router.add_api_route(
    "/", request_enrolment, methods=["POST"], status_code=201, response_model=EnrolmentRead, include_in_schema=False
)


@router.get("", response_model=ListOf[EnrolmentRead], responses=AUTH_RESPONSES)
async def list_enrolments(
    engine: EngineDep,
    caller: Viewer,
    page: PageDep,
    offering_id: str | None = None,
    home_institution_id: str | None = None,
    status: Status | None = None,
) -> dict[str, Any]:
    """The enrolments the caller may see: a student their own, a counsellor their institution's students',
    provider staff those in their institution's offerings, a network admin all."""
    filters = {"offering_id": offering_id, "home_institution_id": home_institution_id, "status": status}
    async with engine.connect() as conn:
        total, items = await views.list_enrolments(
            conn, filters=filters, offset=page.offset, limit=page.page_size, scope=access.enrolment_scope(caller)
        )
    return {"total": total, "page": page.page, "page_size": page.page_size, "items": items}


router.add_api_route(
    "/", list_enrolments, methods=["GET"], response_model=ListOf[EnrolmentRead], include_in_schema=False
)


@router.get("/students/me", response_model=StudentExport, responses=AUTH_RESPONSES, tags=["personal data"])
async def export_my_data(engine: EngineDep, caller: StudentCaller) -> dict[str, Any]:
    """A student's export of everything held about them: personal fields, student_ref, enrolments, results."""
    assert caller.institution_id is not None and caller.learner_id is not None  # required of student tokens
    async with engine.connect() as conn:
        student = await views.find_student(conn, caller.institution_id, caller.learner_id)
        if student is None:
            return views.empty_export(caller.institution_id)
        return await views.student_export(conn, student)


@router.get("/students/{student_ref}", response_model=StudentExport, responses=WITH_404, tags=["personal data"])
async def export_student_data(student_ref: str, engine: EngineDep, caller: DataController) -> dict[str, Any]:
    """The same export for a counsellor of the student's home institution, or a network admin."""
    async with engine.connect() as conn:
        student = await views.student_by_ref(conn, student_ref, access.student_scope(caller))
        return await views.student_export(conn, student)


@router.post("/students/{student_ref}/erase", response_model=StudentExport, responses=WITH_404, tags=["personal data"])
async def erase_student(student_ref: str, engine: EngineDep, caller: DataController) -> dict[str, Any]:
    """Erase a student's personal data (name, email, learner id). The pseudonymous student_ref and the
    enrolments stay, so money and reports still add up. Erasing again changes nothing."""
    async with engine.begin() as conn:
        await views.student_by_ref(conn, student_ref, access.student_scope(caller))
        await handlers.erase_student(conn, student_ref)
        await audit.record(conn, audit_log, caller, "student.erase", student_ref)
        student = await views.student_by_ref(conn, student_ref, access.student_scope(caller))
        return await views.student_export(conn, student)


@router.get("/{enrolment_id}", response_model=EnrolmentRead, responses=WITH_404)
async def get_enrolment(enrolment_id: str, engine: EngineDep, caller: Viewer) -> dict[str, Any]:
    async with engine.connect() as conn:
        return await views.get_enrolment(conn, enrolment_id, access.enrolment_scope(caller))


async def _check_visible(conn: AsyncConnection, caller: Principal, enrolment_id: str) -> None:
    if (await conn.execute(access.visible_enrolment_query(caller, enrolment_id))).first() is None:
        raise access.enrolment_not_found(enrolment_id)


@router.post("/{enrolment_id}/withdraw", response_model=EnrolmentRead, responses=WITH_404)
async def withdraw(
    enrolment_id: str, request: Request, engine: EngineDep, caller: Viewer, body: WithdrawBody | None = None
) -> dict[str, Any]:
    """Withdraw (the student, their counsellor or a network admin): free before the free-cancellation
    deadline, charged after it; the seat goes to the waitlist."""
    by = caller.role.value
    if caller.is_admin and body is not None and body.by:
        by = body.by
    cmd = handlers.Withdraw(enrolment_id=enrolment_id, by=by)
    async with engine.begin() as conn:
        await _check_visible(conn, caller, enrolment_id)
        access.check_may_withdraw(caller)
        result = await handlers.withdraw(conn, cmd, correlation_id(request))
        await audit.record(conn, audit_log, caller, "enrolment.withdraw", enrolment_id)
        return result


@router.post("/{enrolment_id}/result", response_model=EnrolmentRead, responses=WITH_404)
async def record_result(
    enrolment_id: str, body: ResultBody, request: Request, engine: EngineDep, caller: Viewer
) -> dict[str, Any]:
    """Record the provider's result (passed, failed, interrupted); publishes `enrolment.completed`."""
    cmd = handlers.RecordResult(enrolment_id=enrolment_id, outcome=body.outcome, grade=body.grade, credits=body.credits)
    async with engine.begin() as conn:
        await _check_visible(conn, caller, enrolment_id)
        access.check_may_record_result(caller)
        result = await handlers.record_result(conn, cmd, correlation_id(request))
        await audit.record(conn, audit_log, caller, "enrolment.result", enrolment_id)
        return result
