"""Bulk CSV import of courses and offerings: read the file (`csvfile`), check and write it (`apply`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from services.catalogue.imports.apply import apply, load_state, plan, refuse_other_providers, report
from services.catalogue.imports.csvfile import COLUMNS, MAX_BYTES, MAX_ROWS, Row, read

__all__ = ["COLUMNS", "MAX_BYTES", "MAX_ROWS", "Row", "import_rows", "read"]


async def import_rows(
    conn: AsyncConnection, rows: list[Row], correlation_id: str, *, dry_run: bool, only_provider: str | None = None
) -> dict[str, Any]:
    """Check every row, write the good ones in the caller's transaction, and report each row.

    With `only_provider` (an importing provider's own staff) a row of any other provider is refused on
    its line, and nothing of other providers is read or reported. For a dry run the caller rolls the
    transaction back: the report is exactly what a real run would answer.
    """
    if only_provider is not None:
        refuse_other_providers(rows, only_provider)
    state = await load_state(conn, [row for row in rows if only_provider in (None, row.provider_id)])
    steps = plan(rows, state)
    await apply(conn, steps, correlation_id)
    return report(rows, steps, state, dry_run=dry_run)
