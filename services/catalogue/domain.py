"""Catalogue rules: institution kinds, academic years, guideline prices, offering lifecycle. No I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

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


def moved_deadline(deadline: date, old_start: date, new_start: date) -> date:
    """A deadline keeps its distance to the start when the start moves (unless a new one is given)."""
    return deadline + (new_start - old_start)


def publish(status: str) -> OfferingStatus:
    if status != OfferingStatus.DRAFT:
        raise Conflict(f"Only a draft offering can be published; this one is {status}.")
    return OfferingStatus.PUBLISHED


def cancel(status: str) -> OfferingStatus:
    if status == OfferingStatus.CANCELLED:
        raise Conflict("The offering is already cancelled.")
    if status == OfferingStatus.COMPLETED:
        raise Conflict("A completed offering cannot be cancelled.")
    return OfferingStatus.CANCELLED


def close(status: str) -> OfferingStatus:
    """Stop taking enrolments before the window would close by itself."""
    if status != OfferingStatus.PUBLISHED:
        raise Conflict(f"Only a published offering can be closed; this one is {status}.")
    return OfferingStatus.CLOSED


def complete(status: str) -> OfferingStatus:
    if status not in (OfferingStatus.PUBLISHED, OfferingStatus.CLOSED):
        raise Conflict(f"Only a published or closed offering can be completed; this one is {status}.")
    return OfferingStatus.COMPLETED


def check_editable(status: str) -> None:
    if status in (OfferingStatus.CANCELLED, OfferingStatus.COMPLETED):
        raise Conflict(f"The offering is {status}; it can no longer be changed.")


LANGUAGES = ("fi", "sv", "en")


def merge_texts(current: dict[str, str | None], patch: dict[str, str | None]) -> dict[str, str | None]:
    """JSON merge patch of a fi/sv/en text: given languages replace (null or "" removes), others stay."""
    merged = dict(current)
    for language, text in patch.items():
        merged[language] = text or None
    return {language: merged.get(language) for language in LANGUAGES}


def require_text(texts: dict[str, str | None], what: str) -> None:
    if not any(texts.get(language) for language in LANGUAGES):
        raise Invalid(f"{what} needs at least one of fi, sv, en.")


# --- changes to whole aggregates: only what differs is returned, as column values ----------------

PLAN_FIELDS = ("start_date", "end_date", "enrolment_opens", "enrolment_closes", "min_participants", "max_participants")


def new_offering_values(
    plan: OfferingPlan,
    credits: Decimal,
    guideline: Guideline,
    *,
    member_price: Decimal | None = None,
    external_price: Decimal | None = None,
    deadline: date | None = None,
) -> dict[str, Any]:
    """Columns of a new offering; prices and the free-cancellation deadline default from the guideline."""
    check_offering_plan(plan)
    member, external = guideline_prices(credits, guideline)
    return {
        **asdict(plan),
        "academic_year": academic_year_of(plan.start_date),
        "member_price": member if member_price is None else member_price,
        "external_price": external if external_price is None else external_price,
        "free_cancellation_deadline": free_cancellation_deadline(plan.start_date, guideline, deadline),
    }


def revise_offering(
    current: Mapping[str, Any], changes: Mapping[str, Any], credits: Decimal, guideline: Guideline
) -> dict[str, Any]:
    """The columns that `changes` alter, checked as a whole against the plan rules.

    An absent field keeps its value; a null price or deadline goes back to the guideline's default
    (`guideline` is that of the academic year of the new start). When the start moves and no new
    deadline is given, the deadline moves with it.
    """
    plan = OfferingPlan(**{name: changes.get(name, current[name]) for name in PLAN_FIELDS})
    check_offering_plan(plan)
    member, external = guideline_prices(credits, guideline)
    new: dict[str, Any] = {**asdict(plan), "academic_year": academic_year_of(plan.start_date)}
    for price, default in (("member_price", member), ("external_price", external)):
        if price in changes:
            new[price] = default if changes[price] is None else changes[price]
    deadline = "free_cancellation_deadline"
    if deadline in changes:
        new[deadline] = free_cancellation_deadline(plan.start_date, guideline, changes[deadline])
    elif plan.start_date != current["start_date"]:
        new[deadline] = moved_deadline(current[deadline], current["start_date"], plan.start_date)
    diff = {name: value for name, value in new.items() if current[name] != value}
    if diff:
        check_editable(current["status"])
    return diff


def _text_columns(prefix: str, texts: Mapping[str, str | None]) -> dict[str, str | None]:
    return {f"{prefix}_{language}": texts.get(language) for language in LANGUAGES}


COURSE_SCALARS = ("subject", "level", "credits", "delivery_mode", "teacher_contact")


def revise_course(current: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """The course columns that `changes` alter; titles and descriptions merge per language."""
    titles = merge_texts(current["titles"], changes.get("titles") or {})
    require_text(titles, "A course title")
    descriptions = merge_texts(current["descriptions"], changes.get("descriptions") or {})
    old = {
        **_text_columns("title", current["titles"]),
        **_text_columns("description", current["descriptions"]),
        **{name: current[name] for name in COURSE_SCALARS},
        "languages": ",".join(current["languages"]),
    }
    new = {**_text_columns("title", titles), **_text_columns("description", descriptions)}
    new.update({name: changes[name] for name in COURSE_SCALARS if name in changes})
    if "languages" in changes:
        if not changes["languages"]:
            raise Invalid("A course needs at least one language of instruction.")
        new["languages"] = ",".join(dict.fromkeys(changes["languages"]))
    return {name: value for name, value in new.items() if old[name] != value}


INSTITUTION_SCALARS = ("kind", "member", "municipality", "region", "business_id", "einvoice_address")


def revise_institution(current: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """The institution columns that `changes` alter; names merge per language."""
    names = merge_texts(current["names"], changes.get("names") or {})
    require_text(names, "An institution's names")
    old = {**_text_columns("name", current["names"]), **{name: current[name] for name in INSTITUTION_SCALARS}}
    new = {**_text_columns("name", names), **{name: changes[name] for name in INSTITUTION_SCALARS if name in changes}}
    return {name: value for name, value in new.items() if old[name] != value}
