"""Reporting rules, no I/O: what state each event implies, what a state contributes to the counters,
and how figures are shown (money, credits, rates).

The read models keep one *state row* per enrolment and per commitment (status + the aggregate's
`sequence`) and *counter rows* per report dimension. An event moves a state row only when its
sequence is newer than the row's; the counters then move by `contribution(new) - contribution(old)`.
That makes every counter a pure function of the set of newest states, so duplicates and any arrival
order give the same reports.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal

from shared.errors import Invalid

# --- enrolments -----------------------------------------------------------------------------------

STATUS_BY_EVENT = {
    "enrolment.requested": "awaiting_commitment",
    "enrolment.waitlisted": "waitlisted",
    "enrolment.confirmed": "confirmed",
    "enrolment.rejected": "rejected",
    "enrolment.withdrawn": "withdrawn",
    "enrolment.cancelled": "cancelled",
    "enrolment.completed": "completed",  # replaced by the event's outcome
}
OUTCOMES = ("passed", "failed", "interrupted")
# A recorded result keeps its seat: a finished course is full, not empty.
HOLDING_SEAT = ("awaiting_commitment", "confirmed", *OUTCOMES)
ENROLMENT_STATUSES = ("awaiting_commitment", "confirmed", "waitlisted", "rejected", "withdrawn", "cancelled", *OUTCOMES)

ENROLMENT_COUNTERS = ("requests", *ENROLMENT_STATUSES, "withdrawn_late", "credits_earned")
"""Columns of every enrolment counter table. `requests` counts enrolments ever made (incl. waitlisted);
`credits_earned` is in hundredths of a credit."""


@dataclass(frozen=True)
class EnrolmentState:
    """What reporting keeps of one enrolment: its newest status and the facts that go with it."""

    status: str
    late: bool = False
    credits_centi: int = 0


def enrolment_status(routing_key: str, outcome: str | None = None) -> str:
    """The status an enrolment event implies; `enrolment.completed` means its outcome."""
    status = STATUS_BY_EVENT[routing_key]
    if status != "completed":
        return status
    if outcome not in OUTCOMES:
        raise Invalid(f"enrolment.completed has outcome {outcome!r}; expected one of {', '.join(OUTCOMES)}.")
    return outcome


def enrolment_contribution(state: EnrolmentState | None) -> dict[str, int]:
    """What one enrolment in `state` adds to its counter rows."""
    if state is None:
        return {}
    vector = {"requests": 1, state.status: 1}
    if state.status == "withdrawn" and state.late:
        vector["withdrawn_late"] = 1
    if state.credits_centi:
        vector["credits_earned"] = state.credits_centi
    return vector


def needs_follow_up(state: EnrolmentState) -> bool:
    """Counsellors follow up failed, interrupted and late-withdrawn enrolments."""
    return state.status in ("failed", "interrupted") or (state.status == "withdrawn" and state.late)


def participant_row(counts: Mapping[str, int]) -> dict[str, int]:
    """Counts per status plus `held` (seats in use) and `completed` (any result recorded)."""
    return {
        "held": sum(counts.get(status, 0) for status in HOLDING_SEAT),
        "awaiting_commitment": counts.get("awaiting_commitment", 0),
        "confirmed": counts.get("confirmed", 0),
        "waitlisted": counts.get("waitlisted", 0),
        "rejected": counts.get("rejected", 0),
        "withdrawn": counts.get("withdrawn", 0),
        "withdrawn_late": counts.get("withdrawn_late", 0),
        "cancelled": counts.get("cancelled", 0),
        "completed": sum(counts.get(outcome, 0) for outcome in OUTCOMES),
    }


PARTICIPANT_COUNTERS = (
    "awaiting_commitment",
    "confirmed",
    "waitlisted",
    "rejected",
    "withdrawn",
    "withdrawn_late",
    "cancelled",
    "passed",
    "failed",
    "interrupted",
)


def participant_row_of(counts: Sequence[int]) -> dict[str, int]:
    """`participant_row` from counts in `PARTICIPANT_COUNTERS` order (the fast path for breakdowns)."""
    awaiting, confirmed, waitlisted, rejected, withdrawn, late, cancelled, passed, failed, interrupted = counts
    return {
        "held": awaiting + confirmed + passed + failed + interrupted,
        "awaiting_commitment": awaiting,
        "confirmed": confirmed,
        "waitlisted": waitlisted,
        "rejected": rejected,
        "withdrawn": withdrawn,
        "withdrawn_late": late,
        "cancelled": cancelled,
        "completed": passed + failed + interrupted,
    }


def completion_row(counts: Mapping[str, int]) -> dict[str, object]:
    passed, failed, interrupted = (counts.get(outcome, 0) for outcome in OUTCOMES)
    return {
        "enrolments": counts.get("requests", 0),
        "passed": passed,
        "failed": failed,
        "interrupted": interrupted,
        "completed": passed + failed + interrupted,
        "completion_rate": rate(passed, passed + failed + interrupted),
        "credits_earned": credits_text(counts.get("credits_earned", 0)),
    }


# --- commitments ----------------------------------------------------------------------------------

COMMITMENT_STATUSES = ("pending", "accepted", "rejected", "voided", "chargeable")
STATUS_BY_COMMITMENT_EVENT = {
    "commitment.accepted": "accepted",
    "commitment.rejected": "rejected",
    "commitment.voided": "voided",
    "commitment.chargeable": "chargeable",
}
BILLING_COUNTERS = (
    "commitments",
    "pending_count",
    "pending_cents",
    "committed_count",
    "committed_cents",
    "chargeable_count",
    "chargeable_cents",
    "rejected_count",
    "rejected_cents",
    "voided_count",
    "voided_cents",
)

DOCUMENT_COUNTERS = ("invoice_count", "invoiced_cents", "credit_note_count", "credited_cents")
"""Columns of `document_counts`: invoices and credit notes issued, and their totals in cents."""


@dataclass(frozen=True)
class CommitmentState:
    status: str
    amount_cents: int
    chargeable_cents: int = 0


def commitment_contribution(state: CommitmentState | None) -> dict[str, int]:
    """Committed = accepted or chargeable, at the commitment amount; chargeable at `chargeable_amount`."""
    if state is None:
        return {}
    amount = state.amount_cents
    if state.status == "pending":
        return {"commitments": 1, "pending_count": 1, "pending_cents": amount}
    if state.status == "accepted":
        return {"commitments": 1, "committed_count": 1, "committed_cents": amount}
    if state.status == "chargeable":
        return {
            "commitments": 1,
            "committed_count": 1,
            "committed_cents": amount,
            "chargeable_count": 1,
            "chargeable_cents": state.chargeable_cents,
        }
    if state.status == "rejected":
        return {"commitments": 1, "rejected_count": 1, "rejected_cents": amount}
    if state.status == "voided":
        return {"commitments": 1, "voided_count": 1, "voided_cents": amount}
    raise Invalid(f"Unknown commitment status {state.status!r}; expected one of {', '.join(COMMITMENT_STATUSES)}.")


def billing_side(counts: Mapping[str, int]) -> dict[str, object]:
    """One side (as provider or as home) of an institution's billing line; money as decimal strings."""
    return {
        "commitments": counts.get("commitments", 0),
        "pending": money(counts.get("pending_cents", 0)),
        "pending_count": counts.get("pending_count", 0),
        "committed": money(counts.get("committed_cents", 0)),
        "committed_count": counts.get("committed_count", 0),
        "chargeable": money(counts.get("chargeable_cents", 0)),
        "chargeable_count": counts.get("chargeable_count", 0),
        "invoiced": money(counts.get("invoiced_cents", 0)),
        "invoice_count": counts.get("invoice_count", 0),
        "credited": money(counts.get("credited_cents", 0)),
        "credit_note_count": counts.get("credit_note_count", 0),
        "voided": money(counts.get("voided_cents", 0)),
        "voided_count": counts.get("voided_count", 0),
        "rejected_count": counts.get("rejected_count", 0),
    }


# --- offerings ------------------------------------------------------------------------------------

AT_RISK_STATUSES = ("published", "closed")
"""Offerings that can still be cancelled for too few participants."""


def period_of(start: date | None) -> str | None:
    """The supply-and-demand period of an offering: the month it starts, `2026-09`."""
    return None if start is None else f"{start.year:04d}-{start.month:02d}"


def academic_year_of(moment: date | datetime) -> str:
    """1 Aug – 31 Jul: 2026-09-01 → `2026-2027`, 2027-03-01 → `2026-2027`."""
    first = moment.year if moment.month >= 8 else moment.year - 1
    return f"{first}-{first + 1}"


def check_academic_year(value: str | None) -> None:
    if value is None:
        return
    parts = value.split("-")
    if len(parts) != 2 or not all(p.isdigit() and len(p) == 4 for p in parts) or int(parts[1]) != int(parts[0]) + 1:
        raise Invalid(f"academic_year {value!r} is not like `2026-2027` (two consecutive years).")


# --- figures --------------------------------------------------------------------------------------

CENT = Decimal("0.01")
RATE_PLACES = Decimal("0.0001")


def money(cents: int) -> str:
    """Integer cents → `"1234.50"`."""
    return f"{(Decimal(cents) / 100).quantize(CENT)}"


def to_cents(amount: Decimal | str) -> int:
    value = Decimal(amount) * 100
    if value != value.to_integral_value():
        raise Invalid(f"{amount} has fractions of a cent")
    return int(value)


def credits_centi(value: str | Decimal | None) -> int:
    """Credits as hundredths (exact sums in SQL); half up to 0.01 credit."""
    if value is None or value == "":
        return 0
    return int((Decimal(value) * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def credits_text(centi: int) -> str:
    """Hundredths of a credit → `"6.0"`, `"2.5"`, `"1.25"`."""
    text = f"{(Decimal(centi) / 100).quantize(CENT)}"
    return text[:-1] if text.endswith("0") else text


def rate(numerator: int, denominator: int) -> str | None:
    """A share as a decimal string with 4 places (`"0.6667"`), null when there is nothing to divide by."""
    if denominator <= 0:
        return None
    return f"{(Decimal(numerator) / Decimal(denominator)).quantize(RATE_PLACES, rounding=ROUND_HALF_UP)}"
