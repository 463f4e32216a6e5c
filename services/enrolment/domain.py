"""Enrolment rules: statuses, who may enrol when, seat holding. No I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import StrEnum

from shared.errors import Conflict


class Status(StrEnum):
    AWAITING_COMMITMENT = "awaiting_commitment"
    WAITLISTED = "waitlisted"
    CONFIRMED = "confirmed"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"
    CANCELLED = "cancelled"
    PASSED = "passed"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


ACTIVE = frozenset({Status.AWAITING_COMMITMENT, Status.WAITLISTED, Status.CONFIRMED})


def check_can_enrol(offering_status: str, opens: date, closes: date, today: date) -> None:
    """Enrolment is open only for published offerings inside their enrolment window."""
    if offering_status != "published":
        raise Conflict(f"The offering is {offering_status}; it takes no enrolments.")
    if today < opens:
        raise Conflict(f"Enrolment opens on {opens.isoformat()}.", enrolment_opens=opens.isoformat())
    if today > closes:
        raise Conflict(f"Enrolment closed on {closes.isoformat()}.", enrolment_closes=closes.isoformat())


# Billing's decision on the commitment moves only an enrolment in this status.
AWAITING_DECISION = Status.AWAITING_COMMITMENT


def confirm(status: str) -> Status | None:
    """The commitment was accepted: only an enrolment awaiting it moves (a late event changes nothing)."""
    return Status.CONFIRMED if status == AWAITING_DECISION else None


def reject(status: str) -> Status | None:
    return Status.REJECTED if status == AWAITING_DECISION else None


class Outcome(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


FULL = Decimal(100)


@dataclass(frozen=True)
class Withdrawal:
    late: bool
    charge_percent: Decimal
    frees_seat: bool
    was_waitlisted: bool


def withdraw(status: str, deadline: date, today: date, late_percent: Decimal) -> Withdrawal:
    """Free before the free-cancellation deadline (and always from the waitlist); charged after it."""
    if status not in ACTIVE:
        raise Conflict(f"Only an active enrolment can be withdrawn; this one is {status}.")
    if status == Status.WAITLISTED:
        return Withdrawal(late=False, charge_percent=Decimal(0), frees_seat=False, was_waitlisted=True)
    late = today > deadline
    return Withdrawal(
        late=late, charge_percent=late_percent if late else Decimal(0), frees_seat=True, was_waitlisted=False
    )


def complete(status: str, outcome: Outcome, late_percent: Decimal) -> Decimal:
    """A result can be recorded for a confirmed enrolment; returns the share now chargeable."""
    if status != Status.CONFIRMED:
        raise Conflict(f"A result can be recorded only for a confirmed enrolment; this one is {status}.")
    return late_percent if outcome == Outcome.INTERRUPTED else FULL


def cancellable(status: str) -> bool:
    """The provider cancelled the offering: every active enrolment is cancelled."""
    return status in ACTIVE
