"""The event catalogue: one module per producing service, and the envelope."""

from shared.events.billing import (
    CommitmentAccepted,
    CommitmentChargeable,
    CommitmentCreated,
    CommitmentRejected,
    CommitmentVoided,
    CreditNoteIssued,
    InvoiceIssued,
)
from shared.events.catalogue import (
    InstitutionRegistered,
    InstitutionUpdated,
    LocalizedText,
    OfferingCancelled,
    OfferingPublished,
    OfferingUpdated,
    PricingGuidelineSet,
)
from shared.events.enrolment import (
    EnrolmentCancelled,
    EnrolmentCompleted,
    EnrolmentConfirmed,
    EnrolmentRejected,
    EnrolmentRequested,
    EnrolmentWaitlisted,
    EnrolmentWithdrawn,
)
from shared.events.envelope import Envelope, EventData, Money, new_event, routing_key_of, to_money

CATALOGUE: tuple[type[EventData], ...] = (
    InstitutionRegistered,
    InstitutionUpdated,
    PricingGuidelineSet,
    OfferingPublished,
    OfferingUpdated,
    OfferingCancelled,
    EnrolmentRequested,
    EnrolmentWaitlisted,
    EnrolmentConfirmed,
    EnrolmentRejected,
    EnrolmentWithdrawn,
    EnrolmentCancelled,
    EnrolmentCompleted,
    CommitmentCreated,
    CommitmentAccepted,
    CommitmentRejected,
    CommitmentVoided,
    CommitmentChargeable,
    InvoiceIssued,
    CreditNoteIssued,
)
"""Every event type a service may publish, in one place."""

BY_NAME: dict[str, type[EventData]] = {model.name: model for model in CATALOGUE}

__all__ = [
    "BY_NAME",
    "CATALOGUE",
    "CommitmentAccepted",
    "CommitmentChargeable",
    "CommitmentCreated",
    "CommitmentRejected",
    "CommitmentVoided",
    "CreditNoteIssued",
    "EnrolmentCancelled",
    "EnrolmentCompleted",
    "EnrolmentConfirmed",
    "EnrolmentRejected",
    "EnrolmentRequested",
    "EnrolmentWaitlisted",
    "EnrolmentWithdrawn",
    "Envelope",
    "EventData",
    "InstitutionRegistered",
    "InstitutionUpdated",
    "InvoiceIssued",
    "LocalizedText",
    "Money",
    "OfferingCancelled",
    "OfferingPublished",
    "OfferingUpdated",
    "PricingGuidelineSet",
    "new_event",
    "routing_key_of",
    "to_money",
]
