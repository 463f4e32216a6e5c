"""Catalogue HTTP routes: parse, call one handler in one transaction, answer."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.catalogue import domain, handlers, views
from services.catalogue.tables import idempotency_keys
from shared.events import Money
from shared.http import ListOf, Page, correlation_id
from shared.idempotency import run_once
from shared.service import EngineDep

router = APIRouter()
Language = Literal["fi", "sv", "en"]
SLUG = r"^[a-z0-9][a-z0-9-]{1,62}$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Texts(Strict):
    fi: str | None = Field(None, max_length=300)
    sv: str | None = Field(None, max_length=300)
    en: str | None = Field(None, max_length=300)


class LongTexts(Strict):
    fi: str | None = Field(None, max_length=10000)
    sv: str | None = Field(None, max_length=10000)
    en: str | None = Field(None, max_length=10000)


class InstitutionCreate(Strict):
    id: str = Field(pattern=SLUG, description="slug, e.g. `sakky`")
    names: Texts
    kind: domain.InstitutionKind
    member: bool = Field(description="false for an institution outside the network")
    municipality: str | None = Field(None, max_length=100)
    region: str | None = Field(None, max_length=100)
    business_id: str | None = Field(None, pattern=r"^\d{7}-\d$", description="Y-tunnus, e.g. 1234567-8")
    einvoice_address: str | None = Field(None, max_length=100)

    @model_validator(mode="after")
    def _named(self) -> InstitutionCreate:
        if not (self.names.fi or self.names.sv or self.names.en):
            raise ValueError("names needs at least one of fi, sv, en")
        return self


class InstitutionRead(InstitutionCreate):
    model_config = ConfigDict(extra="ignore")


class GuidelineBody(Strict):
    price_per_credit: Money
    external_surcharge_percent: Decimal = Field(ge=0, le=1000, decimal_places=2)
    late_withdrawal_percent: Decimal = Field(Decimal(100), ge=0, le=100, decimal_places=2)
    free_cancellation_days: int = Field(14, ge=0, le=365)


class CourseCreate(Strict):
    provider_id: str
    code: str = Field(min_length=1, max_length=50)
    titles: Texts
    descriptions: LongTexts = LongTexts()
    subject: str = Field(min_length=1, max_length=100)
    level: str = Field(min_length=1, max_length=50)
    credits: Decimal = Field(gt=0, le=100, decimal_places=1)
    languages: list[Language] = Field(min_length=1)
    delivery_mode: domain.DeliveryMode
    teacher_contact: str | None = Field(None, max_length=200)


class CourseRead(CourseCreate):
    model_config = ConfigDict(extra="ignore")
    id: str


class OfferingCreate(Strict):
    course_id: str
    start_date: date
    end_date: date
    enrolment_opens: date
    enrolment_closes: date
    min_participants: int = Field(1, ge=0, le=10000)
    max_participants: int = Field(ge=1, le=10000)
    member_price: Money | None = Field(None, description="defaults from the pricing guideline")
    external_price: Money | None = Field(None, description="defaults from the pricing guideline")
    free_cancellation_deadline: date | None = Field(None, description="defaults to start + guideline days")


class OfferingRead(BaseModel):
    id: str
    course_id: str
    course_code: str
    provider_id: str
    titles: Texts
    subject: str
    level: str
    credits: Decimal
    languages: list[str]
    delivery_mode: str
    academic_year: str
    start_date: date
    end_date: date
    enrolment_opens: date
    enrolment_closes: date
    min_participants: int
    max_participants: int
    member_price: Money
    external_price: Money
    free_cancellation_deadline: date
    status: str
    region: str | None


IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)]
PageDep = Annotated[Page, Depends()]


async def _create(
    request: Request,
    engine: EngineDep,
    key: str | None,
    body: BaseModel,
    work: Any,
    read_model: type[BaseModel],
) -> JSONResponse:
    async def run(conn: Any) -> tuple[int, dict[str, Any]]:
        data = await work(conn)
        return 201, read_model.model_validate(data).model_dump(mode="json")

    scoped = f"{request.method} {request.url.path}:{key}" if key else None
    status, payload, replayed = await run_once(engine, idempotency_keys, scoped, body.model_dump(mode="json"), run)
    return JSONResponse(payload, status_code=200 if replayed else status)


@router.post("/institutions", status_code=201, response_model=InstitutionRead, tags=["institutions"])
async def register_institution(
    body: InstitutionCreate, request: Request, engine: EngineDep, key: IdempotencyKey = None
) -> JSONResponse:
    """Register a member or outside institution; publishes `institution.registered`."""
    cmd = handlers.RegisterInstitution(**{**body.model_dump(), "names": body.names.model_dump()})
    return await _create(
        request,
        engine,
        key,
        body,
        lambda conn: handlers.register_institution(conn, cmd, correlation_id(request)),
        InstitutionRead,
    )


@router.get("/institutions", response_model=ListOf[InstitutionRead], tags=["institutions"])
async def list_institutions(engine: EngineDep, page: PageDep, member: bool | None = None) -> dict[str, Any]:
    async with engine.connect() as conn:
        total, items = await views.list_institutions(conn, member=member, offset=page.offset, limit=page.page_size)
    return {"total": total, "page": page.page, "page_size": page.page_size, "items": items}


@router.get("/institutions/{institution_id}", response_model=InstitutionRead, tags=["institutions"])
async def get_institution(institution_id: str, engine: EngineDep) -> dict[str, Any]:
    async with engine.connect() as conn:
        return await views.get_institution(conn, institution_id)


@router.get("/pricing-guidelines/{academic_year}", response_model=GuidelineBody, tags=["pricing"])
async def get_guideline(academic_year: str, engine: EngineDep) -> dict[str, Any]:
    domain.check_academic_year(academic_year)
    async with engine.connect() as conn:
        guideline = await views.guideline_for(conn, academic_year)
    return guideline.__dict__


@router.put("/pricing-guidelines/{academic_year}", response_model=GuidelineBody, tags=["pricing"])
async def put_guideline(academic_year: str, body: GuidelineBody, engine: EngineDep) -> GuidelineBody:
    """Set the year's guideline; existing offerings and commitments keep their prices."""
    async with engine.begin() as conn:
        await handlers.set_pricing_guideline(conn, academic_year, domain.Guideline(**body.model_dump()))
    return body


@router.post("/courses", status_code=201, response_model=CourseRead, tags=["courses"])
async def create_course(
    body: CourseCreate, request: Request, engine: EngineDep, key: IdempotencyKey = None
) -> JSONResponse:
    data = body.model_dump()
    cmd = handlers.CreateCourse(**{**data, "titles": data["titles"], "descriptions": data["descriptions"]})
    return await _create(request, engine, key, body, lambda conn: handlers.create_course(conn, cmd), CourseRead)


@router.get("/courses", response_model=ListOf[CourseRead], tags=["courses"])
async def list_courses(engine: EngineDep, page: PageDep, provider: str | None = None) -> dict[str, Any]:
    async with engine.connect() as conn:
        total, items = await views.list_courses(conn, provider=provider, offset=page.offset, limit=page.page_size)
    return {"total": total, "page": page.page, "page_size": page.page_size, "items": items}


@router.get("/courses/{course_id}", response_model=CourseRead, tags=["courses"])
async def get_course(course_id: str, engine: EngineDep) -> dict[str, Any]:
    async with engine.connect() as conn:
        return await views.get_course(conn, course_id)


@router.post("/offerings", status_code=201, response_model=OfferingRead, tags=["offerings"])
async def create_offering(
    body: OfferingCreate, request: Request, engine: EngineDep, key: IdempotencyKey = None
) -> JSONResponse:
    """Create a draft offering of a course; prices default from the year's pricing guideline."""
    plan = domain.OfferingPlan(
        **body.model_dump(
            include={
                "start_date",
                "end_date",
                "enrolment_opens",
                "enrolment_closes",
                "min_participants",
                "max_participants",
            }
        )
    )
    cmd = handlers.CreateOffering(
        course_id=body.course_id,
        plan=plan,
        member_price=body.member_price,
        external_price=body.external_price,
        free_cancellation_deadline=body.free_cancellation_deadline,
    )
    return await _create(request, engine, key, body, lambda conn: handlers.create_offering(conn, cmd), OfferingRead)


@router.get("/offerings", response_model=ListOf[OfferingRead], tags=["offerings"])
async def search_offerings(
    engine: EngineDep,
    page: PageDep,
    q: Annotated[str | None, Query(max_length=200)] = None,
    subject: str | None = None,
    level: str | None = None,
    language: Language | None = None,
    provider: str | None = None,
    region: str | None = None,
    academic_year: str | None = None,
    status: str | None = None,
    open_now: bool = False,
) -> dict[str, Any]:
    """Search the catalogue: text over titles in fi/sv/en and facets; paginated."""
    filters = {
        "subject": subject,
        "level": level,
        "language": language,
        "provider": provider,
        "region": region,
        "academic_year": academic_year,
        "status": status,
        "open_on": date.today() if open_now else None,
    }
    async with engine.connect() as conn:
        total, items = await views.search_offerings(
            conn, q=q, filters=filters, offset=page.offset, limit=page.page_size
        )
    return {"total": total, "page": page.page, "page_size": page.page_size, "items": items}


@router.get("/offerings/{offering_id}", response_model=OfferingRead, tags=["offerings"])
async def get_offering(offering_id: str, engine: EngineDep) -> dict[str, Any]:
    async with engine.connect() as conn:
        return await views.get_offering(conn, offering_id)


@router.post("/offerings/{offering_id}/publish", response_model=OfferingRead, tags=["offerings"])
async def publish_offering(offering_id: str, request: Request, engine: EngineDep) -> dict[str, Any]:
    """Open a draft offering to enrolment; publishes `offering.published`."""
    async with engine.begin() as conn:
        return await handlers.publish_offering(conn, offering_id, correlation_id(request))
