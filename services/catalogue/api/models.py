"""Request and response bodies of the catalogue API (inputs refuse unknown fields)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.catalogue import domain
from shared.events import Money
from shared.http import ListOf

Language = Literal["fi", "sv", "en"]
SLUG = r"^[a-z0-9][a-z0-9-]{1,62}$"
BUSINESS_ID = r"^\d{7}-\d$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Patch(Strict):
    """Base of PATCH bodies: a field left out stays as it is; `not_null` fields refuse an explicit null."""

    not_null: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="after")
    def _refuse_nulls(self) -> Self:
        nulls = sorted(name for name in self.model_fields_set & self.not_null if getattr(self, name) is None)
        if nulls:
            raise ValueError(f"{', '.join(nulls)} cannot be null")
        return self

    def changes(self) -> dict[str, Any]:
        """The given fields as Python values (texts only with the languages given)."""
        return {
            name: value.model_dump(exclude_unset=True) if isinstance(value, BaseModel) else value
            for name in self.model_fields_set
            for value in [getattr(self, name)]
        }


class Texts(Strict):
    fi: str | None = Field(None, max_length=300)
    sv: str | None = Field(None, max_length=300)
    en: str | None = Field(None, max_length=300)


class Names(Strict):
    """An institution's names (the columns hold 200 characters)."""

    fi: str | None = Field(None, max_length=200)
    sv: str | None = Field(None, max_length=200)
    en: str | None = Field(None, max_length=200)


class LongTexts(Strict):
    fi: str | None = Field(None, max_length=10000)
    sv: str | None = Field(None, max_length=10000)
    en: str | None = Field(None, max_length=10000)


# --- institutions and the pricing guideline ----------------------------------------------------------


class InstitutionCreate(Strict):
    id: str = Field(pattern=SLUG, description="slug, e.g. `sakky`")
    names: Names
    kind: domain.InstitutionKind
    member: bool = Field(description="false for an institution outside the network")
    municipality: str | None = Field(None, max_length=100)
    region: str | None = Field(None, max_length=100)
    business_id: str | None = Field(None, pattern=BUSINESS_ID, description="Y-tunnus, e.g. 1234567-8")
    einvoice_address: str | None = Field(None, max_length=100)

    @model_validator(mode="after")
    def _named(self) -> InstitutionCreate:
        if not (self.names.fi or self.names.sv or self.names.en):
            raise ValueError("names needs at least one of fi, sv, en")
        return self


class InstitutionRead(InstitutionCreate):
    model_config = ConfigDict(extra="ignore")


class InstitutionPatch(Patch):
    """Fields to change; `names` merges per language (null removes one); null clears an optional field."""

    not_null = frozenset({"names", "kind", "member"})
    names: Names | None = None
    kind: domain.InstitutionKind | None = None
    member: bool | None = None
    municipality: str | None = Field(None, max_length=100)
    region: str | None = Field(None, max_length=100)
    business_id: str | None = Field(None, pattern=BUSINESS_ID)
    einvoice_address: str | None = Field(None, max_length=100)


class GuidelineBody(Strict):
    price_per_credit: Money
    external_surcharge_percent: Decimal = Field(ge=0, le=1000, decimal_places=2)
    late_withdrawal_percent: Decimal = Field(Decimal(100), ge=0, le=100, decimal_places=2)
    free_cancellation_days: int = Field(14, ge=0, le=365)


# --- courses -------------------------------------------------------------------------------------------


class CourseCreate(Strict):
    provider_id: str
    code: str = Field(min_length=1, max_length=50)
    titles: Texts
    descriptions: LongTexts = LongTexts()
    subject: str = Field(min_length=1, max_length=100)
    level: str = Field(min_length=1, max_length=50)
    credits: Decimal = Field(gt=0, le=100, decimal_places=1)
    languages: list[Language] = Field(min_length=1)
    delivery_mode: domain.DeliveryMode
    teacher_contact: str | None = Field(None, max_length=200)


class CourseRead(CourseCreate):
    model_config = ConfigDict(extra="ignore")
    id: str


class CoursePatch(Patch):
    """Fields to change; titles and descriptions merge per language. Offering prices stay as they are."""

    not_null = frozenset({"titles", "descriptions", "subject", "level", "credits", "languages", "delivery_mode"})
    titles: Texts | None = None
    descriptions: LongTexts | None = None
    subject: str | None = Field(None, min_length=1, max_length=100)
    level: str | None = Field(None, min_length=1, max_length=50)
    credits: Decimal | None = Field(None, gt=0, le=100, decimal_places=1)
    languages: list[Language] | None = Field(None, min_length=1)
    delivery_mode: domain.DeliveryMode | None = None
    teacher_contact: str | None = Field(None, max_length=200)


# --- offerings -----------------------------------------------------------------------------------------


class OfferingCreate(Strict):
    course_id: str
    external_id: str | None = Field(None, max_length=100, description="the provider's own id (the CSV import key)")
    start_date: date
    end_date: date
    enrolment_opens: date
    enrolment_closes: date
    min_participants: int = Field(1, ge=0, le=10000)
    max_participants: int = Field(ge=1, le=10000)
    member_price: Money | None = Field(None, description="defaults from the pricing guideline")
    external_price: Money | None = Field(None, description="defaults from the pricing guideline")
    free_cancellation_deadline: date | None = Field(None, description="defaults to start + guideline days")


class OfferingPatch(Patch):
    """Fields to change, checked together with the rest. A null price or deadline returns to the guideline's
    default; a moved start moves the deadline with it unless a deadline is given."""

    not_null = frozenset(domain.PLAN_FIELDS)
    start_date: date | None = None
    end_date: date | None = None
    enrolment_opens: date | None = None
    enrolment_closes: date | None = None
    min_participants: int | None = Field(None, ge=0, le=10000)
    max_participants: int | None = Field(None, ge=1, le=10000)
    member_price: Money | None = None
    external_price: Money | None = None
    free_cancellation_deadline: date | None = None


class CancelBody(Strict):
    reason: str | None = Field(None, max_length=500)


class OfferingRead(BaseModel):
    id: str
    course_id: str
    course_code: str
    provider_id: str
    external_id: str | None
    titles: Texts
    subject: str
    level: str
    credits: Decimal
    languages: list[str]
    delivery_mode: str
    academic_year: str
    start_date: date
    end_date: date
    enrolment_opens: date
    enrolment_closes: date
    min_participants: int
    max_participants: int
    member_price: Money
    external_price: Money
    free_cancellation_deadline: date
    status: str
    region: str | None
    late_withdrawal_percent: Decimal | None = Field(description="the guideline's share, fixed when published")
    published_at: datetime | None
    cancellation_reason: str | None
    version: int


class FacetCount(BaseModel):
    value: str
    count: int


class SearchPage(ListOf[OfferingRead]):
    facets: dict[str, list[FacetCount]] = Field(
        description="counts per subject, level, language, delivery_mode, provider and region; each facet "
        "counts with every filter except its own"
    )


# --- imports ------------------------------------------------------------------------------------------


class ImportRowReport(BaseModel):
    line: int = Field(description="1-based line of the row in the file; the header is line 1")
    status: Literal["created", "updated", "unchanged", "rejected"]
    offering_id: str | None
    errors: list[str]


class ImportReport(BaseModel):
    created: int
    updated: int
    unchanged: int
    rejected: int
    dry_run: bool
    rows: list[ImportRowReport]
