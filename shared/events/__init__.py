"""The event catalogue: one module per producing service, and the envelope."""

from shared.events.billing import CommitmentAccepted, CommitmentCreated, CommitmentRejected
from shared.events.catalogue import (
    InstitutionRegistered,
    InstitutionUpdated,
    LocalizedText,
    OfferingCancelled,
    OfferingPublished,
    OfferingUpdated,
)
from shared.events.enrolment import (
    EnrolmentConfirmed,
    EnrolmentRejected,
    EnrolmentRequested,
    EnrolmentWaitlisted,
)
from shared.events.envelope import Envelope, EventData, Money, new_event, routing_key_of, to_money

CATALOGUE: tuple[type[EventData], ...] = (
    InstitutionRegistered,
    InstitutionUpdated,
    OfferingPublished,
    OfferingUpdated,
    OfferingCancelled,
    EnrolmentRequested,
    EnrolmentWaitlisted,
    EnrolmentConfirmed,
    EnrolmentRejected,
    CommitmentCreated,
    CommitmentAccepted,
    CommitmentRejected,
)
"""Every event type a service may publish, in one place."""

BY_NAME: dict[str, type[EventData]] = {model.name: model for model in CATALOGUE}

__all__ = [
    "BY_NAME",
    "CATALOGUE",
    "CommitmentAccepted",
    "CommitmentCreated",
    "CommitmentRejected",
    "EnrolmentConfirmed",
    "EnrolmentRejected",
    "EnrolmentRequested",
    "EnrolmentWaitlisted",
    "Envelope",
    "EventData",
    "InstitutionRegistered",
    "InstitutionUpdated",
    "LocalizedText",
    "Money",
    "OfferingCancelled",
    "OfferingPublished",
    "OfferingUpdated",
    "new_event",
    "routing_key_of",
    "to_money",
]
