"""Events published by the enrolment service. No personal data: students are pseudonymous refs."""

from __future__ import annotations

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
