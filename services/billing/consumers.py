"""What the billing service listens to, in one block."""

from services.billing import handlers
from shared.bus import Handler

SUBSCRIPTIONS: dict[str, Handler] = {
    "institution.registered": handlers.on_institution,
    "institution.updated": handlers.on_institution,
    "enrolment.requested": handlers.open_commitment,
    "enrolment.withdrawn": handlers.on_withdrawn,
    "enrolment.cancelled": handlers.on_cancelled,
    "enrolment.completed": handlers.on_completed,
}
