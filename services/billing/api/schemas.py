"""Request and response bodies of the billing API."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.billing import domain
from shared.events import Money


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


DECIDED_BY = "who decided, as the events tell it; the caller's role when left out (the audit log names the caller)"


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")
    decided_by: str | None = Field(None, min_length=1, max_length=100, description=DECIDED_BY)
    reason: str | None = Field(None, max_length=500)


class BulkAccept(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ids: list[str] = Field(min_length=1, max_length=1000)
    decided_by: str | None = Field(None, min_length=1, max_length=100, description=DECIDED_BY)


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
    payee_id: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="only what is owed to this provider; finance staff always run their own institution's",
    )

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
    payee_id: str | None = Field(None, description="the one provider the run covered; null: the whole network")
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
