"""Events published by the billing service."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from pydantic import Field

from shared.events.envelope import EventData, Money


class CommitmentFacts(EventData):
    """What every commitment event says about the commitment it concerns."""

    commitment_id: str
    enrolment_id: str
    offering_id: str
    payer_id: str = Field(description="the student's home institution")
    payee_id: str = Field(description="the providing institution")
    amount: Money
    academic_year: str


class CommitmentCreated(CommitmentFacts):
    """A payment commitment (maksusitoumus) was opened with the price snapshot."""

    name = "commitment.created"
    price_kind: str = Field(description="`member` or `external`, by the payer's membership")
    status: str = Field(description="`pending` until accepted or rejected")


class CommitmentAccepted(CommitmentFacts):
    """The payer accepted the commitment (automatically or by a person)."""

    name = "commitment.accepted"
    decided_by: str = Field(description="`automatic` or the approver")


class CommitmentRejected(CommitmentFacts):
    """The payer rejected the commitment; the enrolment is rejected and its seat released."""

    name = "commitment.rejected"
    reason: str | None = None


class CommitmentVoided(CommitmentFacts):
    """Nothing is owed: a free withdrawal or a cancelled offering (a credit note if already invoiced)."""

    name = "commitment.voided"
    reason: str


class CommitmentChargeable(CommitmentFacts):
    """The payer owes `chargeable_amount` (late withdrawal, interruption, result, deadline passed)."""

    name = "commitment.chargeable"
    chargeable_amount: Money
    reason: str


class InvoiceIssued(EventData):
    """An invoice run billed one payer for one payee's chargeable commitments."""

    name = "invoice.issued"
    invoice_id: str
    number: str = Field(description="sequential per payee")
    payee_id: str
    payer_id: str
    period_start: date
    period_end: date
    total: Money
    vat_rate: Decimal = Field(default=Decimal(0), description="education services: 0 %, category E")
    commitment_ids: list[str]


class CreditNoteIssued(EventData):
    """A commitment voided after it was invoiced is credited back."""

    name = "credit_note.issued"
    credit_note_id: str
    number: str
    invoice_id: str
    payee_id: str
    payer_id: str
    total: Money
    commitment_ids: list[str]
