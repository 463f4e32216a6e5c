"""Invoice routes: invoice runs (finance staff for their own institution, the admin for the network),
invoices and credit notes as JSON, CSV and UBL, visible to the finance staff of payer and payee."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.ext.asyncio import AsyncConnection

from services.billing import access, domain, einvoice, handlers, views
from services.billing.api.common import FinanceStaff, IdempotencyKey, PageDep, Today, retrying_conflicts
from services.billing.api.schemas import InvoiceRead, InvoiceRunCreate, InvoiceRunRead, InvoiceSummaryRead
from services.billing.tables import audit_log, idempotency_keys, invoices
from shared import audit
from shared.http import ListOf, correlation_id, problem, problem_responses
from shared.idempotency import run_once, scoped_key
from shared.service import EngineDep

router = APIRouter(tags=["invoices"])


@router.post(
    "/invoice-runs",
    status_code=201,
    response_model=InvoiceRunRead,
    responses=problem_responses(401, 403, 409, 422),
)
async def run_invoices(
    body: InvoiceRunCreate,
    caller: FinanceStaff,
    request: Request,
    engine: EngineDep,
    today: Today,
    key: IdempotencyKey = None,
) -> JSONResponse:
    """Invoice what became chargeable by `period_end` (one invoice per payee and payer), credit what was voided.

    Finance staff run what is owed to their own institution; the network admin runs the whole
    network, or one provider's with `payee_id`. A retry with the same `Idempotency-Key` (per caller,
    for 24 hours) answers the first run's result instead of running again.
    """
    payee_id = access.invoice_run_payee(caller, body.payee_id)

    async def work(conn: AsyncConnection) -> tuple[int, dict[str, Any]]:
        run = await handlers.run_invoices(
            conn,
            body.period_start,
            body.period_end,
            today=today,
            correlation_id=correlation_id(request),
            payee_id=payee_id,
        )
        await audit.record(conn, audit_log, caller, "invoice_run.create", run["id"])
        return 201, InvoiceRunRead.model_validate(run).model_dump(mode="json")

    scoped = scoped_key("invoice-runs", caller.subject, key)
    payload = {**body.model_dump(mode="json"), "payee_id": payee_id}
    status, answer, replayed = await retrying_conflicts(
        lambda: run_once(engine, idempotency_keys, scoped, payload, work)
    )
    return JSONResponse(answer, status_code=200 if replayed else status)


@router.get("/invoices", response_model=ListOf[InvoiceSummaryRead], responses=problem_responses(401, 403))
async def list_invoices(
    caller: FinanceStaff,
    engine: EngineDep,
    page: PageDep,
    payee: str | None = None,
    payer: str | None = None,
    kind: domain.DocumentKind | None = None,
    period_start: Annotated[date | None, Query(description="documents whose period ends on or after this")] = None,
    period_end: Annotated[date | None, Query(description="documents whose period starts on or before this")] = None,
) -> dict[str, Any]:
    """Invoices and credit notes the caller's institution sent or received (all for the network admin),
    filtered by payee, payer, kind and a period they overlap."""
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
            where=access.scope(caller, invoices),
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
    responses={
        200: {
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                "application/xml": {"schema": {"type": "string", "description": "PEPPOL BIS Billing 3.0 UBL"}},
            }
        },
        **problem_responses(401, 403, 404),
        406: {"description": "none of JSON, CSV or XML is acceptable"},
    },
)
async def get_invoice(
    invoice_id: str,
    caller: FinanceStaff,
    engine: EngineDep,
    accept: Annotated[str | None, Header()] = None,
    format: Format | None = None,
) -> Response:
    """An invoice or credit note of the caller's institution: JSON; `Accept: text/csv` for its lines;
    `Accept: application/xml` for UBL."""
    wanted = format or negotiate(accept)
    if wanted is None:
        return problem(406, "This document is available as application/json, text/csv or application/xml.")
    async with engine.connect() as conn:
        document = await views.get_invoice(conn, invoice_id)
        access.check_document_visible(caller, document, invoice_id)
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
