"""Bulk CSV import of courses and offerings: read the file (`csvfile`), check and write it (`apply`)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.catalogue.imports.apply import apply, load_state, plan, refuse_other_providers, report
from services.catalogue.imports.csvfile import COLUMNS, MAX_BYTES, MAX_ROWS, Row, read
from services.catalogue.tables import course_terms, offering_search

__all__ = [
    "ANALYZE_FROM_ROWS",
    "COLUMNS",
    "MAX_BYTES",
    "MAX_ROWS",
    "Row",
    "analyze_search_tables",
    "import_rows",
    "read",
]

log = structlog.get_logger("catalogue.imports")

# An import that created or updated this many offerings refreshes PostgreSQL's statistics of the search
# tables at once (~0.1-0.3 s here); smaller ones leave it to autovacuum.
ANALYZE_FROM_ROWS = 100


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


async def analyze_search_tables(engine: AsyncEngine) -> None:
    """PostgreSQL: refresh the planner's statistics of the search tables, after a large import has committed.

    Until autovacuum gets to them (a minute or so), the planner takes freshly imported rows for a handful,
    and a word + facet search probes the word index once per offering: 200-900 ms instead of 12-24 ms
    (docs/performance.md). The import is already committed: a failure here is logged, not answered."""
    if engine.dialect.name != "postgresql":
        return
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.text(f"ANALYZE {offering_search.name}, {course_terms.name}"))
    except Exception:
        log.warning("import.analyze_failed", exc_info=True)
