"""Billing rules: price by membership, commitment modes and budgets, commitment states. No I/O."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum

from shared.errors import Conflict


class Mode(StrEnum):
    AUTOMATIC = "automatic"
    MANUAL = "manual"


class Status(StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    VOIDED = "voided"
    CHARGEABLE = "chargeable"


# Commitments that use up the payer's yearly budget.
COUNTS_AGAINST_BUDGET = (Status.ACCEPTED, Status.CHARGEABLE)


def price_for(payer_is_member: bool, member_price: Decimal, external_price: Decimal) -> tuple[str, Decimal]:
    """Members pay the member price; outside institutions the external price."""
    return ("member", member_price) if payer_is_member else ("external", external_price)


def default_mode(payer_is_member: bool) -> Mode:
    """Members accept automatically unless they chose otherwise; outside institutions decide by hand."""
    return Mode.AUTOMATIC if payer_is_member else Mode.MANUAL


def accepts_automatically(mode: str, budget: Decimal | None, used: Decimal, amount: Decimal) -> bool:
    """Automatic mode accepts at once while the yearly budget (if any) still covers the amount."""
    if mode != Mode.AUTOMATIC:
        return False
    return budget is None or used + amount <= budget


def decide(status: str, accept: bool) -> Status:
    if status != Status.PENDING:
        raise Conflict(f"Only a pending commitment can be accepted or rejected; this one is {status}.")
    return Status.ACCEPTED if accept else Status.REJECTED
