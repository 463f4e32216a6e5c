"""Reporting HTTP routes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from services.reporting import views
from shared.service import EngineDep

router = APIRouter(tags=["reports"])


@router.get("/participants")
async def participants(
    engine: EngineDep,
    academic_year: str | None = None,
    provider: str | None = None,
    offering_id: str | None = None,
) -> dict[str, Any]:
    """Participants per offering (seats, held, confirmed, waitlisted) and by home institution."""
    async with engine.connect() as conn:
        return await views.participants(conn, academic_year=academic_year, provider=provider, offering_id=offering_id)
