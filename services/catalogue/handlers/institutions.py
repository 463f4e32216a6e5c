"""Institutions: register and change; every change is published with the whole new state."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from services.catalogue import domain, search, views
from services.catalogue.handlers.events import emit, institution_event
from services.catalogue.handlers.offerings import touch_offerings
from services.catalogue.tables import institutions, offerings
from shared.errors import Conflict
from shared.events import InstitutionRegistered, InstitutionUpdated


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
    await emit(conn, correlation_id, (institution_event(InstitutionRegistered, data), cmd.id, 1))
    return data


async def update_institution(
    conn: AsyncConnection, institution_id: str, changes: dict[str, Any], correlation_id: str
) -> dict[str, Any]:
    """Change some fields; publishes `institution.updated`, and `offering.updated` for its offerings if the region
    changed (offering events carry the provider's region). A change that changes nothing publishes nothing."""
    current = await views.get_institution(conn, institution_id)
    diff = domain.revise_institution(current, changes)
    if not diff:
        return current
    i = institutions.c
    if "region" in diff:
        await search.next_generation(conn)
    await conn.execute(institutions.update().where(i.id == institution_id).values(**diff, version=i.version + 1))
    version = (await conn.execute(sa.select(i.version).where(i.id == institution_id))).scalar_one()
    data = await views.get_institution(conn, institution_id)
    await emit(conn, correlation_id, (institution_event(InstitutionUpdated, data), institution_id, version))
    if "region" in diff:
        ids = (await conn.execute(sa.select(offerings.c.id).where(offerings.c.provider_id == institution_id))).scalars()
        await touch_offerings(conn, list(ids), correlation_id)
    return data
