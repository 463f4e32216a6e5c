"""Rendered reports kept until the read models change: an identical request then costs one tiny query.

The projections raise `read_model_generation` in the same transaction as every change they make (and a
rebuild raises it too), so an answer computed after reading generation G is never older than G: the
cache keeps it under G and serves it only while the generation read for a later request is still G.
The generation is read first, on the same connection as the report's own statements, so the report
reflects at least every change up to G (each later statement sees every commit before it). Works
across processes: the consumer may run elsewhere (split mode); the API reads the generation per request.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.reporting import export
from services.reporting.tables import read_model_generation

GENERATION = sa.select(read_model_generation.c.generation).where(read_model_generation.c.id == 1)
MAX_ENTRIES = 256
MAX_BYTES = 32 << 20
"""What the rendered answers may hold in all; the least recently used go first."""
MAX_ENTRY_BYTES = 1 << 20
"""Larger answers (exports of every row) are rendered each time rather than held in memory."""


class ResponseCache:
    """The rendered answers of one database's read models at their newest generation (LRU, bounded)."""

    def __init__(self, engine: AsyncEngine, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES) -> None:
        self.engine, self.max_entries, self.max_bytes = engine, max_entries, max_bytes
        self.generation: int | None = None
        self.entries: OrderedDict[Hashable, export.Rendered] = OrderedDict()
        self.size = 0

    async def answer(
        self,
        key: Hashable,
        fmt: export.Format,
        build: Callable[[AsyncConnection], Awaitable[export.Report]],
    ) -> export.Rendered:
        """The report `key` in `fmt`: from the cache if the read models have not changed since it was made."""
        async with self.engine.connect() as conn:
            generation = (await conn.execute(GENERATION)).scalar_one_or_none()
            if generation is not None and generation != self.generation:
                self.entries.clear()
                self.size = 0
                self.generation = generation
            full_key = (key, fmt)
            hit = self.entries.get(full_key)
            if hit is not None and generation is not None:
                self.entries.move_to_end(full_key)
                return hit
            report = await build(conn)
        answer = export.rendered(report, fmt)
        # Another request may have seen a newer generation meanwhile: keep this answer only under its own.
        if generation is not None and generation == self.generation and len(answer.content) <= MAX_ENTRY_BYTES:
            if full_key not in self.entries:
                self.entries[full_key] = answer
                self.size += len(answer.content)
            while len(self.entries) > self.max_entries or self.size > self.max_bytes:
                _key, dropped = self.entries.popitem(last=False)
                self.size -= len(dropped.content)
        return answer
