"""What reporting listens to: everything (`#`), stored in the event store, projected as below."""

from services.reporting import handlers
from shared.bus import Handler

PROJECTIONS: dict[str, handlers.Projection] = {
    "institution.registered": handlers.project_institution,
    "institution.updated": handlers.project_institution,
    "offering.published": handlers.project_offering,
    "offering.updated": handlers.project_offering,
    "offering.cancelled": handlers.project_offering_cancelled,
    "enrolment.requested": handlers.project_enrolment,
    "enrolment.waitlisted": handlers.project_enrolment,
    "enrolment.confirmed": handlers.project_enrolment,
    "enrolment.rejected": handlers.project_enrolment,
    "enrolment.withdrawn": handlers.project_enrolment,
    "enrolment.cancelled": handlers.project_enrolment,
    "enrolment.completed": handlers.project_enrolment,
    "commitment.created": handlers.project_commitment,
    "commitment.accepted": handlers.project_commitment,
    "commitment.rejected": handlers.project_commitment,
    "commitment.voided": handlers.project_commitment,
    "commitment.chargeable": handlers.project_commitment,
    "invoice.issued": handlers.project_invoice,
    "credit_note.issued": handlers.project_credit_note,
}
"""`pricing_guideline.set` is kept in the event store only: no report reads it."""

SUBSCRIPTIONS: dict[str, Handler] = {"#": handlers.recorder(PROJECTIONS)}
