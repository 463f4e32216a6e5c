"""What reporting listens to: everything (`#`), stored in the event store, projected as below."""

from services.reporting import handlers
from shared.bus import Handler

PROJECTIONS: dict[str, handlers.Projection] = {
    "offering.published": handlers.project_offering,
    "offering.updated": handlers.project_offering,
    "enrolment.requested": handlers.project_enrolment,
    "enrolment.waitlisted": handlers.project_enrolment,
    "enrolment.confirmed": handlers.project_enrolment,
    "enrolment.rejected": handlers.project_enrolment,
}

SUBSCRIPTIONS: dict[str, Handler] = {"#": handlers.recorder(PROJECTIONS)}
