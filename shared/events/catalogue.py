"""Events published by the catalogue service."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from pydantic import Field

from shared.events.envelope import EventData, Money


class LocalizedText(EventData):
    """The same text in Finnish, Swedish and English; any may be absent."""

    fi: str | None = None
    sv: str | None = None
    en: str | None = None


class InstitutionRegistered(EventData):
    """A school or college joined the catalogue, as a network member or an outside institution."""

    name = "institution.registered"
    institution_id: str = Field(description="slug, e.g. `sakky`")
    names: LocalizedText
    kind: str
    member: bool = Field(description="false for institutions outside the network")
    municipality: str | None = None
    region: str | None = None
    business_id: str | None = Field(default=None, description="Y-tunnus")
    einvoice_address: str | None = None


class InstitutionUpdated(InstitutionRegistered):
    """An institution's details changed; carries the whole new state."""

    name = "institution.updated"


class OfferingPublished(EventData):
    """An offering opened to enrolment; carries what other services need to keep a local copy."""

    name = "offering.published"
    offering_id: str
    course_id: str
    provider_id: str = Field(description="the institution that teaches it and is paid")
    titles: LocalizedText
    subject: str
    level: str
    credits: str = Field(description="decimal string, e.g. `2.0`")
    languages: list[str]
    delivery_mode: str
    academic_year: str = Field(description="e.g. `2026-2027`")
    start_date: date
    end_date: date
    enrolment_opens: date
    enrolment_closes: date
    min_participants: int
    max_participants: int
    member_price: Money
    external_price: Money
    free_cancellation_deadline: date
    region: str | None = None
    late_withdrawal_percent: Decimal = Field(
        default=Decimal(100), description="guideline snapshot: share charged for a late withdrawal or interruption"
    )


class OfferingUpdated(OfferingPublished):
    """A published offering changed; carries the whole new state and its status."""

    name = "offering.updated"
    status: str = "published"


class OfferingCancelled(EventData):
    """The provider cancelled an offering; its enrolments are cancelled and commitments voided."""

    name = "offering.cancelled"
    offering_id: str
    provider_id: str
    reason: str | None = None


class PricingGuidelineSet(EventData):
    """The network admin set the pricing guideline of an academic year (existing prices stay)."""

    name = "pricing_guideline.set"
    academic_year: str
    price_per_credit: Money
    external_surcharge_percent: Decimal
    late_withdrawal_percent: Decimal
    free_cancellation_days: int
