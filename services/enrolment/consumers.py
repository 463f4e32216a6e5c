"""What the enrolment service listens to, in one block."""

from services.enrolment import handlers
from shared.bus import Handler

SUBSCRIPTIONS: dict[str, Handler] = {
    "institution.registered": handlers.on_institution,
    "institution.updated": handlers.on_institution,
    "offering.published": handlers.on_offering,
    "offering.updated": handlers.on_offering,
    "offering.cancelled": handlers.on_offering_cancelled,
    "commitment.accepted": handlers.on_commitment_accepted,
    "commitment.rejected": handlers.on_commitment_rejected,
}
