"""Billing rules: price by membership, commitment modes and budgets, commitment states. No I/O."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from enum import StrEnum

from shared.errors import Conflict, Invalid, NotFound
from shared.events import to_money

FULL = Decimal(100)


class Mode(StrEnum):
    AUTOMATIC = "automatic"
    MANUAL = "manual"


class Status(StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    VOIDED = "voided"
    CHARGEABLE = "chargeable"


class Reason(StrEnum):
    """Why a commitment was voided or became chargeable (the `reason` of the event)."""

    WITHDRAWN = "withdrawn"
    LATE_WITHDRAWAL = "late_withdrawal"
    OFFERING_CANCELLED = "offering_cancelled"
    DEADLINE_PASSED = "deadline_passed"
    RESULT_RECORDED = "result_recorded"
    INTERRUPTED = "interrupted"


class DocumentKind(StrEnum):
    INVOICE = "invoice"
    CREDIT_NOTE = "credit_note"


# Commitments that use up the payer's yearly budget (the chargeable amount once chargeable).
COUNTS_AGAINST_BUDGET = (Status.ACCEPTED, Status.CHARGEABLE)


def price_for(payer_is_member: bool, member_price: Decimal, external_price: Decimal) -> tuple[str, Decimal]:
    """Members pay the member price; outside institutions the external price."""
    return ("member", member_price) if payer_is_member else ("external", external_price)


def default_mode(payer_is_member: bool) -> Mode:
    """Members accept automatically unless they chose otherwise; outside institutions decide by hand."""
    return Mode.AUTOMATIC if payer_is_member else Mode.MANUAL


def check_policy(mode: Mode, yearly_budget: Decimal | None) -> None:
    if mode == Mode.MANUAL and yearly_budget is not None:
        raise Invalid(
            "A yearly budget applies to automatic mode only (beyond it commitments wait for approval); "
            "in manual mode every commitment is approved by hand, so leave yearly_budget out."
        )


def accepts_automatically(mode: str, budget: Decimal | None, used: Decimal, amount: Decimal) -> bool:
    """Automatic mode accepts at once while the yearly budget (if any) still covers the amount."""
    if mode != Mode.AUTOMATIC:
        return False
    return budget is None or used + amount <= budget


def decide(status: str, accept: bool) -> Status:
    if status != Status.PENDING:
        raise Conflict(f"Only a pending commitment can be accepted or rejected; this one is {status}.")
    return Status.ACCEPTED if accept else Status.REJECTED


def check_bulk(wanted: Iterable[str], found: dict[str, str], accept: bool) -> None:
    """All or nothing: every id must exist and be pending, else name the ones in the way."""
    verb = "accepted" if accept else "rejected"
    ids = list(dict.fromkeys(wanted))
    missing = [i for i in ids if i not in found]
    if missing:
        raise NotFound(f"No commitment has these ids, so none was {verb}: {', '.join(missing)}.", missing=missing)
    blocked = [{"id": i, "status": found[i]} for i in ids if found[i] != Status.PENDING]
    if blocked:
        listed = ", ".join(f"{b['id']} ({b['status']})" for b in blocked)
        raise Conflict(
            f"Only pending commitments can be {verb}; these are not, so none was {verb}: {listed}.",
            not_pending=blocked,
        )


# --- lifecycle ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Transition:
    """Where a commitment goes next; `chargeable_amount` and `charge_percent` only when chargeable."""

    status: Status
    reason: Reason
    charge_percent: Decimal | None = None
    chargeable_amount: Decimal | None = None


def share(amount: Decimal, percent: Decimal) -> Decimal:
    """`percent` % of the price snapshot, rounded half up once: 33.33 at 50 % is 16.67."""
    return to_money(amount * percent / FULL)


def _void(reason: Reason) -> Transition:
    return Transition(Status.VOIDED, reason)


def _charge(amount: Decimal, percent: Decimal, reason: Reason) -> Transition:
    return Transition(Status.CHARGEABLE, reason, percent, share(amount, percent))


def after_withdrawal(status: str, amount: Decimal, charge_percent: Decimal) -> Transition | None:
    """Pending or free → voided; accepted or already chargeable and late → chargeable at the late share."""
    if status == Status.PENDING:
        return _void(Reason.WITHDRAWN)
    if status in (Status.ACCEPTED, Status.CHARGEABLE):
        if charge_percent <= 0:
            return _void(Reason.WITHDRAWN)
        return _charge(amount, charge_percent, Reason.LATE_WITHDRAWAL)
    return None


def after_cancellation(status: str) -> Transition | None:
    """The provider cancelled the offering: nothing is owed, whatever was decided or invoiced."""
    if status in (Status.REJECTED, Status.VOIDED):
        return None
    return _void(Reason.OFFERING_CANCELLED)


def after_result(status: str, amount: Decimal, outcome: str, charge_percent: Decimal) -> Transition | None:
    """A recorded result makes an accepted commitment chargeable (100 %, or the late share if interrupted)."""
    if status not in (Status.ACCEPTED, Status.CHARGEABLE):
        return None
    reason = Reason.INTERRUPTED if outcome == "interrupted" else Reason.RESULT_RECORDED
    if charge_percent <= 0:
        return _void(reason)
    return _charge(amount, charge_percent, reason)


def after_deadline(status: str, amount: Decimal) -> Transition | None:
    """Still enrolled after the free-cancellation deadline: the whole price is owed."""
    return _charge(amount, FULL, Reason.DEADLINE_PASSED) if status == Status.ACCEPTED else None


def deadline_passed(deadline: date | None, today: date) -> bool:
    """Free cancellation runs through the deadline day itself; the day after, the price is owed."""
    return deadline is not None and today > deadline


def charged_from(deadline: date) -> date:
    """The day a commitment became chargeable because its deadline passed."""
    return deadline + timedelta(days=1)


def changes(status: str, chargeable_amount: Decimal | None, transition: Transition) -> bool:
    """A transition that leaves status and amount as they are is no transition (no version, no event)."""
    return (status, chargeable_amount) != (transition.status, transition.chargeable_amount)


def due(status: str, chargeable_amount: Decimal | None) -> Decimal:
    """What the payer owes for a commitment now; invoices and credit notes bring the billed sum to it."""
    if status == Status.CHARGEABLE and chargeable_amount is not None:
        return chargeable_amount
    return Decimal("0.00")


# --- invoices ----------------------------------------------------------------------------------

CREDIT_NOTE_SERIES = "CN"
PAYMENT_TERM_DAYS = 14
VAT_RATE = Decimal(0)
CURRENCY = "EUR"


@dataclass(frozen=True)
class Adjustment:
    """What an invoice run does for one commitment: invoice or credit `amount` (always positive)."""

    kind: DocumentKind
    amount: Decimal


def adjustment(status: str, chargeable_amount: Decimal | None, billed: Decimal) -> Adjustment | None:
    """Invoice what is due and not yet billed; credit what was billed and is no longer due."""
    difference = due(status, chargeable_amount) - billed
    if difference > 0:
        return Adjustment(DocumentKind.INVOICE, difference)
    if difference < 0:
        return Adjustment(DocumentKind.CREDIT_NOTE, -difference)
    return None


def document_number(kind: DocumentKind, payee_id: str, year: int, sequence: int) -> str:
    """`SAKKY-2026-0001` for invoices, `SAKKY-CN-2026-0001` for credit notes: one series each, per payee."""
    prefix = payee_id.upper()
    if kind == DocumentKind.CREDIT_NOTE:
        prefix = f"{prefix}-{CREDIT_NOTE_SERIES}"
    return f"{prefix}-{year}-{sequence:04d}"


def check_period(period_start: date, period_end: date) -> None:
    if period_start > period_end:
        raise Invalid(f"period_start {period_start} is after period_end {period_end}; give the period in order.")


REASON_TEXT = {
    Reason.WITHDRAWN: "withdrawn before the free-cancellation deadline",
    Reason.LATE_WITHDRAWAL: "late withdrawal",
    Reason.OFFERING_CANCELLED: "offering cancelled by the provider",
    Reason.DEADLINE_PASSED: "enrolled after the free-cancellation deadline",
    Reason.RESULT_RECORDED: "result recorded",
    Reason.INTERRUPTED: "interrupted",
}


def _why(reason: str | None) -> str:
    try:
        return REASON_TEXT[Reason(reason or "")]
    except ValueError:
        return reason or ""


def describe_line(
    kind: DocumentKind,
    offering_id: str,
    academic_year: str,
    amount: Decimal,
    reason: str | None,
    charge_percent: Decimal | None,
) -> str:
    """One human line per enrolment: what was taken, why it is owed (or credited), at which share."""
    why = _why(reason)
    what = f"offering {offering_id}, {academic_year}"
    if kind == DocumentKind.CREDIT_NOTE:
        return f"Credit for course enrolment, {what}: {why}"
    if charge_percent is not None and charge_percent != FULL:
        return f"Course enrolment, {what}: {why}, {charge_percent.normalize():f} % of {amount}"
    return f"Course enrolment, {what}: {why}"
