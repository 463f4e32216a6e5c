"""Catalogue use cases: one function each, run inside the caller's transaction, events via the outbox."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from services.catalogue import domain, views
from services.catalogue.tables import courses, institutions, offerings, outbox, pricing_guidelines
from shared.bus import stage
from shared.errors import Conflict, Invalid, NotFound
from shared.events import InstitutionRegistered, LocalizedText, OfferingPublished, new_event

SOURCE = "catalogue"


@dataclass(frozen=True)
class RegisterInstitution:
    id: str
    names: dict[str, str | None]
    kind: str
    member: bool
    municipality: str | None = None
    region: str | None = None
    business_id: str | None = None
    einvoice_address: str | None = None


@dataclass(frozen=True)
class CreateCourse:
    provider_id: str
    code: str
    titles: dict[str, str | None]
    subject: str
    level: str
    credits: Decimal
    languages: list[str]
    delivery_mode: str
    descriptions: dict[str, str | None] = field(default_factory=dict)
    teacher_contact: str | None = None


@dataclass(frozen=True)
class CreateOffering:
    course_id: str
    plan: domain.OfferingPlan
    member_price: Decimal | None = None
    external_price: Decimal | None = None
    free_cancellation_deadline: date | None = None


async def register_institution(conn: AsyncConnection, cmd: RegisterInstitution, correlation_id: str) -> dict[str, Any]:
    exists = (await conn.execute(sa.select(institutions.c.id).where(institutions.c.id == cmd.id))).first()
    if exists:
        raise Conflict(f"Institution {cmd.id!r} is already registered.")
    await conn.execute(
        institutions.insert().values(
            id=cmd.id,
            name_fi=cmd.names.get("fi"),
            name_sv=cmd.names.get("sv"),
            name_en=cmd.names.get("en"),
            kind=cmd.kind,
            member=cmd.member,
            municipality=cmd.municipality,
            region=cmd.region,
            business_id=cmd.business_id,
            einvoice_address=cmd.einvoice_address,
            version=1,
        )
    )
    data = await views.get_institution(conn, cmd.id)
    event = InstitutionRegistered(
        institution_id=cmd.id,
        names=LocalizedText(**data["names"]),
        **{k: data[k] for k in ("kind", "member", "municipality", "region", "business_id", "einvoice_address")},
    )
    await stage(
        conn,
        outbox,
        new_event(event, source=SOURCE, subject=cmd.id, sequence=1, correlation_id=correlation_id),
    )
    return data


async def set_pricing_guideline(conn: AsyncConnection, academic_year: str, guideline: domain.Guideline) -> None:
    domain.check_academic_year(academic_year)
    values = {
        "price_per_credit": guideline.price_per_credit,
        "external_surcharge_percent": guideline.external_surcharge_percent,
        "late_withdrawal_percent": guideline.late_withdrawal_percent,
        "free_cancellation_days": guideline.free_cancellation_days,
    }
    updated = await conn.execute(
        pricing_guidelines.update().where(pricing_guidelines.c.academic_year == academic_year).values(**values)
    )
    if updated.rowcount == 0:
        await conn.execute(pricing_guidelines.insert().values(academic_year=academic_year, **values))


async def create_course(conn: AsyncConnection, cmd: CreateCourse) -> dict[str, Any]:
    await views.get_institution(conn, cmd.provider_id)
    if not any(cmd.titles.values()):
        raise Invalid("A course needs a title in at least one of fi, sv, en.")
    duplicate = (
        await conn.execute(
            sa.select(courses.c.id).where(courses.c.provider_id == cmd.provider_id, courses.c.code == cmd.code)
        )
    ).first()
    if duplicate:
        raise Conflict(f"{cmd.provider_id} already has a course with code {cmd.code!r}.", course_id=duplicate.id)
    course_id = str(uuid.uuid4())
    await conn.execute(
        courses.insert().values(
            id=course_id,
            provider_id=cmd.provider_id,
            code=cmd.code,
            title_fi=cmd.titles.get("fi"),
            title_sv=cmd.titles.get("sv"),
            title_en=cmd.titles.get("en"),
            description_fi=cmd.descriptions.get("fi"),
            description_sv=cmd.descriptions.get("sv"),
            description_en=cmd.descriptions.get("en"),
            subject=cmd.subject,
            level=cmd.level,
            credits=cmd.credits,
            languages=",".join(cmd.languages),
            delivery_mode=cmd.delivery_mode,
            teacher_contact=cmd.teacher_contact,
        )
    )
    return await views.get_course(conn, course_id)


async def create_offering(conn: AsyncConnection, cmd: CreateOffering) -> dict[str, Any]:
    course = await views.get_course(conn, cmd.course_id)
    domain.check_offering_plan(cmd.plan)
    year = domain.academic_year_of(cmd.plan.start_date)
    guideline = await views.guideline_for(conn, year)
    member, external = domain.guideline_prices(course["credits"], guideline)
    offering_id = str(uuid.uuid4())
    plan = cmd.plan
    await conn.execute(
        offerings.insert().values(
            id=offering_id,
            course_id=cmd.course_id,
            provider_id=course["provider_id"],
            academic_year=year,
            start_date=plan.start_date,
            end_date=plan.end_date,
            enrolment_opens=plan.enrolment_opens,
            enrolment_closes=plan.enrolment_closes,
            min_participants=plan.min_participants,
            max_participants=plan.max_participants,
            member_price=cmd.member_price if cmd.member_price is not None else member,
            external_price=cmd.external_price if cmd.external_price is not None else external,
            free_cancellation_deadline=domain.free_cancellation_deadline(
                plan.start_date, guideline, cmd.free_cancellation_deadline
            ),
            status=domain.OfferingStatus.DRAFT,
            version=1,
        )
    )
    return await views.get_offering(conn, offering_id)


def offering_published(data: dict[str, Any], guideline: domain.Guideline) -> OfferingPublished:
    derived = {"offering_id", "titles", "credits", "late_withdrawal_percent"}
    return OfferingPublished(
        offering_id=data["id"],
        titles=LocalizedText(**data["titles"]),
        credits=str(data["credits"]),
        late_withdrawal_percent=guideline.late_withdrawal_percent,
        **{k: data[k] for k in OfferingPublished.model_fields if k not in derived},
    )


async def publish_offering(conn: AsyncConnection, offering_id: str, correlation_id: str) -> dict[str, Any]:
    row = (
        await conn.execute(sa.select(offerings.c.status, offerings.c.version).where(offerings.c.id == offering_id))
    ).first()
    if row is None:
        raise NotFound(f"Offering {offering_id!r} does not exist.")
    status = domain.publish(row.status)
    version = row.version + 1
    await conn.execute(offerings.update().where(offerings.c.id == offering_id).values(status=status, version=version))
    data = await views.get_offering(conn, offering_id)
    guideline = await views.guideline_for(conn, data["academic_year"])
    event = new_event(
        offering_published(data, guideline),
        source=SOURCE,
        subject=offering_id,
        sequence=version,
        correlation_id=correlation_id,
    )
    await stage(conn, outbox, event)
    return data
