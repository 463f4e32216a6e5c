"""Enrolment rules: statuses, who may enrol when, seat holding. No I/O."""

from __future__ import annotations

from datetime import date
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


def confirm(status: str) -> Status | None:
    """The commitment was accepted: only an enrolment awaiting it moves (a late event changes nothing)."""
    return Status.CONFIRMED if status == Status.AWAITING_COMMITMENT else None


def reject(status: str) -> Status | None:
    return Status.REJECTED if status == Status.AWAITING_COMMITMENT else None
