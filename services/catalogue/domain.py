"""Catalogue rules: institution kinds, academic years, guideline prices, offering lifecycle. No I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from enum import StrEnum

from shared.errors import Conflict, Invalid
from shared.events import to_money


class InstitutionKind(StrEnum):
    UPPER_SECONDARY = "upper_secondary"
    VOCATIONAL = "vocational"
    UNIVERSITY_OF_APPLIED_SCIENCES = "university_of_applied_sciences"
    UNIVERSITY = "university"
    LEARNING_CENTRE = "learning_centre"
    OTHER = "other"


class DeliveryMode(StrEnum):
    ONLINE_SELF_PACED = "online_self_paced"
    ONLINE_SCHEDULED = "online_scheduled"
    BLENDED = "blended"


class OfferingStatus(StrEnum):
    DRAFT = "draft"
    PUBLISHED = "published"
    CLOSED = "closed"
    CANCELLED = "cancelled"
    COMPLETED = "completed"


@dataclass(frozen=True)
class Guideline:
    """The network's pricing guideline for one academic year."""

    price_per_credit: Decimal
    external_surcharge_percent: Decimal
    late_withdrawal_percent: Decimal = Decimal(100)
    free_cancellation_days: int = 14


# Used until the network admin sets a guideline for the year.
DEFAULT_GUIDELINE = Guideline(price_per_credit=Decimal("40.00"), external_surcharge_percent=Decimal(25))


def academic_year_of(day: date) -> str:
    """Academic years run 1 Aug – 31 Jul: 2026-09-01 → `2026-2027`."""
    first = day.year if day.month >= 8 else day.year - 1
    return f"{first}-{first + 1}"


def check_academic_year(value: str) -> str:
    parts = value.split("-")
    if len(parts) != 2 or not all(p.isdigit() and len(p) == 4 for p in parts) or int(parts[1]) != int(parts[0]) + 1:
        raise Invalid(f"Academic year {value!r} is not of the form 2026-2027.")
    return value


def guideline_prices(credits: Decimal, guideline: Guideline) -> tuple[Decimal, Decimal]:
    """Member price = credits × price per credit; external adds the surcharge. Half up to the cent."""
    member = to_money(credits * guideline.price_per_credit)
    external = to_money(member * (1 + guideline.external_surcharge_percent / 100))
    return member, external


@dataclass(frozen=True)
class OfferingPlan:
    start_date: date
    end_date: date
    enrolment_opens: date
    enrolment_closes: date
    min_participants: int
    max_participants: int


def check_offering_plan(plan: OfferingPlan) -> None:
    """Dates in order and sensible participant limits, with messages a course admin can act on."""
    if plan.end_date < plan.start_date:
        raise Invalid("end_date is before start_date.")
    if plan.enrolment_closes < plan.enrolment_opens:
        raise Invalid("enrolment_closes is before enrolment_opens.")
    if plan.enrolment_opens > plan.start_date:
        raise Invalid("enrolment_opens must be on or before start_date.")
    if plan.min_participants > plan.max_participants:
        raise Invalid("min_participants is larger than max_participants.")


def free_cancellation_deadline(start: date, guideline: Guideline, own: date | None) -> date:
    return own if own is not None else start + timedelta(days=guideline.free_cancellation_days)


def publish(status: str) -> OfferingStatus:
    if status != OfferingStatus.DRAFT:
        raise Conflict(f"Only a draft offering can be published; this one is {status}.")
    return OfferingStatus.PUBLISHED


def cancel(status: str) -> OfferingStatus:
    if status in (OfferingStatus.CANCELLED, OfferingStatus.COMPLETED):
        raise Conflict(f"An offering that is {status} cannot be cancelled.")
    return OfferingStatus.CANCELLED
