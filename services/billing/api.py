"""Billing HTTP routes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from services.billing import domain, einvoice, handlers, views
from services.billing.tables import idempotency_keys
from shared.events import Money
from shared.http import ListOf, Page, correlation_id, problem
from shared.idempotency import run_once
from shared.service import EngineDep

router = APIRouter()
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)]
PageDep = Annotated[Page, Depends()]


def _today(request: Request) -> date:
    clock: Callable[[], date] = getattr(request.app.state, "today", handlers.utc_today)
    return clock()


Today = Annotated[date, Depends(_today)]
T = TypeVar("T")
DEADLOCK, SERIALIZATION_FAILURE = "40P01", "40001"


async def retrying_conflicts(work: Callable[[], Awaitable[T]], attempts: int = 3) -> T:
    """Run a transaction again when PostgreSQL chose it as a deadlock victim (it locks many rows at once)."""
    for attempt in range(1, attempts + 1):
        try:
            return await work()
        except DBAPIError as exc:
            if attempt == attempts or getattr(exc.orig, "sqlstate", None) not in (DEADLOCK, SERIALIZATION_FAILURE):
                raise
    raise AssertionError("unreachable")


class CommitmentRead(BaseModel):
    id: str
    enrolment_id: str
    offering_id: str
    payer_id: str
    payee_id: str
    amount: Money = Field(description="price snapshot at enrolment time; never changes")
    price_kind: str
    academic_year: str
    status: domain.Status
    decided_by: str | None
    reason: str | None
    free_cancellation_deadline: date | None
    charge_percent: Decimal | None = Field(description="share of the amount owed, once chargeable")
    chargeable_amount: Money | None
    chargeable_on: date | None
    voided_on: date | None
    version: int
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


class BulkReject(BulkAccept):
    reason: str | None = Field(None, max_length=500, description="told to the home institution and the student")


class PolicyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: domain.Mode
    yearly_budget: Money | None = Field(None, description="automatic mode only: beyond it, commitments wait")


class PolicyRead(PolicyBody):
    institution_id: str


class InvoiceRunCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    period_start: date
    period_end: date = Field(description="gathers what became chargeable (or was voided) on or before this day")

    @model_validator(mode="after")
    def _in_order(self) -> InvoiceRunCreate:
        if self.period_start > self.period_end:
            raise ValueError(f"period_start {self.period_start} is after period_end {self.period_end}")
        return self


class DocumentSummary(BaseModel):
    id: str
    kind: domain.DocumentKind
    number: str
    payee_id: str
    payer_id: str
    total: Money
    line_count: int
    original_invoice_id: str | None


class InvoiceRunRead(BaseModel):
    id: str
    period_start: date
    period_end: date
    issue_date: date
    invoice_count: int
    credit_note_count: int
    invoiced_total: Money
    credited_total: Money
    invoices: list[DocumentSummary]
    credit_notes: list[DocumentSummary]


class InvoiceLineRead(BaseModel):
    line_no: int
    commitment_id: str
    enrolment_id: str
    offering_id: str
    academic_year: str
    description: str
    amount: Money


class InvoiceSummaryRead(BaseModel):
    id: str
    kind: domain.DocumentKind
    number: str
    run_id: str
    payee_id: str
    payer_id: str
    issue_date: date
    due_date: date
    period_start: date
    period_end: date
    currency: str
    vat_rate: Decimal = Field(description="percent; education services are exempt (category E, 0 %)")
    net_total: Money
    vat_amount: Money
    total: Money
    line_count: int
    original_invoice_id: str | None = Field(description="credit notes: the invoice credited")
    original_invoice_number: str | None
    created_at: datetime


class InvoiceRead(InvoiceSummaryRead):
    lines: list[InvoiceLineRead]


# --- commitments -----------------------------------------------------------------------------------


@router.get("/commitments", response_model=ListOf[CommitmentRead], tags=["commitments"])
async def list_commitments(
    engine: EngineDep,
    page: PageDep,
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
    """Accept several pending commitments at once: all or none (409 names those not pending)."""

    async def work() -> list[dict[str, Any]]:
        async with engine.begin() as conn:
            return await handlers.decide_many(
                conn, body.ids, accept=True, by=body.decided_by, correlation_id=correlation_id(request)
            )

    return await retrying_conflicts(work)


@router.post("/commitments/reject", response_model=list[CommitmentRead], tags=["commitments"])
async def reject_many(body: BulkReject, request: Request, engine: EngineDep) -> list[dict[str, Any]]:
    """Reject several pending commitments at once: all or none (409 names those not pending)."""

    async def work() -> list[dict[str, Any]]:
        async with engine.begin() as conn:
            return await handlers.decide_many(
                conn,
                body.ids,
                accept=False,
                by=body.decided_by,
                correlation_id=correlation_id(request),
                reason=body.reason,
            )

    return await retrying_conflicts(work)


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


# --- policies --------------------------------------------------------------------------------------


@router.get("/policies/{institution_id}", response_model=PolicyRead, tags=["policies"])
async def get_policy(institution_id: str, engine: EngineDep) -> dict[str, Any]:
    async with engine.connect() as conn:
        return await views.policy_for(conn, institution_id)


@router.put("/policies/{institution_id}", response_model=PolicyRead, tags=["policies"])
async def put_policy(institution_id: str, body: PolicyBody, engine: EngineDep) -> dict[str, Any]:
    async with engine.begin() as conn:
        return await handlers.set_policy(conn, institution_id, body.mode, body.yearly_budget)


# --- invoices --------------------------------------------------------------------------------------


@router.post("/invoice-runs", status_code=201, response_model=InvoiceRunRead, tags=["invoices"])
async def run_invoices(
    body: InvoiceRunCreate, request: Request, engine: EngineDep, today: Today, key: IdempotencyKey = None
) -> JSONResponse:
    """Invoice what became chargeable by `period_end` (one invoice per payee and payer), credit what was voided."""

    async def work(conn: AsyncConnection) -> tuple[int, dict[str, Any]]:
        run = await handlers.run_invoices(
            conn, body.period_start, body.period_end, today=today, correlation_id=correlation_id(request)
        )
        return 201, InvoiceRunRead.model_validate(run).model_dump(mode="json")

    scoped = f"invoice-runs:{key}" if key else None
    status, payload, replayed = await retrying_conflicts(
        lambda: run_once(engine, idempotency_keys, scoped, body.model_dump(mode="json"), work)
    )
    return JSONResponse(payload, status_code=200 if replayed else status)


@router.get("/invoices", response_model=ListOf[InvoiceSummaryRead], tags=["invoices"])
async def list_invoices(
    engine: EngineDep,
    page: PageDep,
    payee: str | None = None,
    payer: str | None = None,
    kind: domain.DocumentKind | None = None,
    period_start: Annotated[date | None, Query(description="documents whose period ends on or after this")] = None,
    period_end: Annotated[date | None, Query(description="documents whose period starts on or before this")] = None,
) -> dict[str, Any]:
    """Invoices and credit notes, filtered by payee, payer, kind and a period they overlap."""
    async with engine.connect() as conn:
        total, items = await views.list_invoices(
            conn,
            payee=payee,
            payer=payer,
            kind=kind,
            period_start=period_start,
            period_end=period_end,
            offset=page.offset,
            limit=page.page_size,
        )
    return {"total": total, "page": page.page, "page_size": page.page_size, "items": items}


Format = Literal["json", "csv", "xml"]
MEDIA: dict[str, Format] = {
    "application/json": "json",
    "text/csv": "csv",
    "application/xml": "xml",
    "text/xml": "xml",
    "application/*": "json",
    "text/*": "csv",
    "*/*": "json",
}


def negotiate(accept: str | None) -> Format | None:
    """The best of JSON, CSV and UBL XML for an Accept header (q-values honoured); None if none fits."""
    if not accept:
        return "json"
    best: tuple[float, int, Format] | None = None
    for position, part in enumerate(accept.split(",")):
        media, *params = (p.strip() for p in part.split(";"))
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        chosen = MEDIA.get(media.lower())
        if chosen is None or quality <= 0:
            continue
        rank = (quality, -position - (100 if "*" in media else 0), chosen)
        if best is None or rank[:2] > best[:2]:
            best = rank
    return best[2] if best else None


@router.get(
    "/invoices/{invoice_id}",
    response_model=InvoiceRead,
    tags=["invoices"],
    responses={
        200: {
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                "application/xml": {"schema": {"type": "string", "description": "PEPPOL BIS Billing 3.0 UBL"}},
            }
        },
        406: {"description": "none of JSON, CSV or XML is acceptable"},
    },
)
async def get_invoice(
    invoice_id: str,
    engine: EngineDep,
    accept: Annotated[str | None, Header()] = None,
    format: Format | None = None,
) -> Response:
    """An invoice or credit note: JSON; `Accept: text/csv` for its lines; `Accept: application/xml` for UBL."""
    wanted = format or negotiate(accept)
    if wanted is None:
        return problem(406, "This document is available as application/json, text/csv or application/xml.")
    async with engine.connect() as conn:
        document = await views.get_invoice(conn, invoice_id)
        if wanted == "xml":
            seller, buyer = await views.party(conn, document["payee_id"]), await views.party(conn, document["payer_id"])
            return Response(
                einvoice.render_ubl(document, seller, buyer),
                media_type="application/xml",
                headers={"Content-Disposition": f'attachment; filename="{document["number"]}.xml"'},
            )
    if wanted == "csv":
        return Response(
            einvoice.render_csv(document),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{document["number"]}.csv"'},
        )
    return JSONResponse(InvoiceRead.model_validate(document).model_dump(mode="json"))
