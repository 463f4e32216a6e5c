"""Events published by the enrolment service. No personal data: students are pseudonymous refs."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from pydantic import Field

from shared.events.envelope import EventData, Money


class EnrolmentFacts(EventData):
    """What every enrolment event says about the enrolment it concerns."""

    enrolment_id: str
    offering_id: str
    provider_id: str
    home_institution_id: str
    student_ref: str = Field(description="pseudonymous; never a name, email or learner id")
    academic_year: str


class EnrolmentRequested(EnrolmentFacts):
    """A seat is held for the student; the home institution's payment commitment is needed."""

    name = "enrolment.requested"
    member_price: Money = Field(description="price snapshot at enrolment time")
    external_price: Money = Field(description="price snapshot at enrolment time")
    free_cancellation_deadline: date | None = Field(
        default=None, description="after it, the commitment becomes chargeable while still enrolled"
    )


class EnrolmentWaitlisted(EnrolmentFacts):
    """The offering was full; the student waits in FIFO order."""

    name = "enrolment.waitlisted"
    waitlist_position: int = Field(ge=1)


class EnrolmentConfirmed(EnrolmentFacts):
    """The commitment was accepted; the student has a confirmed seat."""

    name = "enrolment.confirmed"


class EnrolmentRejected(EnrolmentFacts):
    """The commitment was rejected; the seat is released."""

    name = "enrolment.rejected"
    reason: str | None = None


class EnrolmentWithdrawn(EnrolmentFacts):
    """The student or a counsellor withdrew; free before the free-cancellation deadline, charged after."""

    name = "enrolment.withdrawn"
    late: bool = Field(description="after the free-cancellation deadline")
    charge_percent: Decimal = Field(description="share of the commitment now chargeable; 0 when free")
    was_waitlisted: bool = Field(default=False, description="withdrew from the waitlist: no seat, no commitment")


class EnrolmentCancelled(EnrolmentFacts):
    """The provider cancelled the offering; the commitment is voided and the home institution told."""

    name = "enrolment.cancelled"
    reason: str | None = None


class EnrolmentCompleted(EnrolmentFacts):
    """The provider recorded a result; a home institution's system may record the credits."""

    name = "enrolment.completed"
    outcome: str = Field(description="`passed`, `failed` or `interrupted`")
    grade: str | None = None
    credits_earned: str | None = Field(default=None, description="decimal string, e.g. `2.0`")
    charge_percent: Decimal = Field(description="share of the commitment chargeable: 100, or the late share")
