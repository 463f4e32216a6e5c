"""Reporting rules: which status each enrolment event means, and what counts as a held seat. No I/O."""

from __future__ import annotations

STATUS_BY_EVENT = {
    "enrolment.requested": "awaiting_commitment",
    "enrolment.waitlisted": "waitlisted",
    "enrolment.confirmed": "confirmed",
    "enrolment.rejected": "rejected",
}

HOLDING_SEAT = ("awaiting_commitment", "confirmed")
PARTICIPANT_STATUSES = ("awaiting_commitment", "confirmed", "waitlisted", "rejected")


def participant_row(counts: dict[str, int]) -> dict[str, int]:
    """Counts per status plus `held`, the seats in use."""
    row = {status: counts.get(status, 0) for status in PARTICIPANT_STATUSES}
    row["held"] = sum(counts.get(status, 0) for status in HOLDING_SEAT)
    return row
