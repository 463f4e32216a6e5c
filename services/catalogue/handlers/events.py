"""How the catalogue's aggregates become events: payloads built from read dicts, staged in the outbox."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from services.catalogue.tables import outbox
from shared.bus import stage
from shared.events import EventData, InstitutionRegistered, LocalizedText, OfferingPublished, new_event

SOURCE = "catalogue"


async def emit(conn: AsyncConnection, correlation_id: str, *events: tuple[EventData, str, int]) -> None:
    """Stage (payload, subject, sequence) triples in the outbox, in this transaction."""
    await stage(
        conn,
        outbox,
        *(
            new_event(data, source=SOURCE, subject=subject, sequence=sequence, correlation_id=correlation_id)
            for data, subject, sequence in events
        ),
    )


def institution_event(model: type[InstitutionRegistered], data: dict[str, Any]) -> InstitutionRegistered:
    """`institution.registered` or `.updated` (the whole state) from `views.institution_dict`."""
    fields = ("kind", "member", "municipality", "region", "business_id", "einvoice_address")
    return model(institution_id=data["id"], names=LocalizedText(**data["names"]), **{k: data[k] for k in fields})


def offering_event(model: type[OfferingPublished], data: dict[str, Any]) -> OfferingPublished:
    """`offering.published` or `.updated` (the whole state, with status) from `views.offering_dict`."""
    derived = {"offering_id", "titles", "credits"}
    return model(
        offering_id=data["id"],
        titles=LocalizedText(**data["titles"]),
        credits=str(data["credits"]),
        **{k: data[k] for k in model.model_fields if k not in derived},
    )
