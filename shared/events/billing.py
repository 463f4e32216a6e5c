"""Events published by the billing service."""

from __future__ import annotations

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
