"""Billing use cases and event handlers; each runs inside its caller's transaction and never commits."""

from services.billing.handlers.commitments import (
    PayerUnknown,
    decide,
    decide_many,
    on_institution,
    open_commitment,
    set_policy,
)
from services.billing.handlers.common import utc_today
from services.billing.handlers.invoicing import next_number, run_invoices
from services.billing.handlers.lifecycle import charge_due, on_cancelled, on_completed, on_withdrawn

__all__ = [
    "PayerUnknown",
    "charge_due",
    "decide",
    "decide_many",
    "next_number",
    "on_cancelled",
    "on_completed",
    "on_institution",
    "on_withdrawn",
    "open_commitment",
    "run_invoices",
    "set_policy",
    "utc_today",
]
