"""Rebuild every read model from the event store.

python -m services.reporting.rebuild [--database-url URL] [--batch-size 1000] [--if-stale]

In one transaction: clear every read model, then replay `event_store` in `position` order, in
batches, through the same projections the live consumer runs (`consumers.PROJECTIONS`). Readers see
the old reports until the commit, then the new ones. The worker calls `rebuild_if_stale` at start, so
a deploy that changes `PROJECTION_VERSION` (a new report, a fixed projection) rebuilds by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.reporting.consumers import PROJECTIONS
from services.reporting.handlers import raise_generation
from services.reporting.settings import Settings
from services.reporting.tables import READ_MODELS, event_store, projection_state
from shared.db import make_engine
from shared.events import Envelope

log = structlog.get_logger("rebuild")

PROJECTION_VERSION = 2
"""Raise when a projection or read-model table changes meaning: the worker then rebuilds at start."""
STATE_NAME = "reports"


@dataclass(frozen=True)
class Rebuilt:
    events: int
    seconds: float


async def clear_read_models(conn: AsyncConnection) -> None:
    """DELETE, not TRUNCATE: readers keep seeing the old rows (MVCC, WAL) until the rebuild commits,
    where TRUNCATE's exclusive lock would block every report for the whole rebuild."""
    for table in READ_MODELS:
        await conn.execute(table.delete())


async def replay(conn: AsyncConnection, batch_size: int = 1000) -> int:
    """Project every stored event again, in `position` order; returns how many were read."""
    after, count = 0, 0
    while True:
        rows = (
            await conn.execute(
                sa.select(event_store.c.position, event_store.c.envelope)
                .where(event_store.c.position > after)
                .order_by(event_store.c.position)
                .limit(batch_size)
            )
        ).all()
        if not rows:
            return count
        for row in rows:
            event = Envelope.from_json(row.envelope)
            projection = PROJECTIONS.get(event.routing_key)
            if projection is not None:
                await projection(conn, event)
        count += len(rows)
        after = rows[-1].position


async def _mark(conn: AsyncConnection, events: int) -> None:
    await conn.execute(projection_state.delete().where(projection_state.c.name == STATE_NAME))
    await conn.execute(
        projection_state.insert().values(
            name=STATE_NAME, version=PROJECTION_VERSION, events=events, rebuilt_at=datetime.now(UTC)
        )
    )


async def rebuild_in(conn: AsyncConnection, batch_size: int = 1000) -> int:
    """Clear and replay inside the caller's transaction."""
    await clear_read_models(conn)
    events = await replay(conn, batch_size)
    await _mark(conn, events)
    await raise_generation(conn)
    return events


async def rebuild(engine: AsyncEngine, batch_size: int = 1000) -> Rebuilt:
    """Clear every read model and project the whole event store again, in one transaction."""
    started = time.perf_counter()
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # One rebuild at a time. A live projection touching a row the rebuild deleted or wrote waits for its
            # commit, then applies on top of the rebuilt state; every projection is idempotent, so an event both
            # replayed and projected live counts once.
            await conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('tarjotin.reporting.rebuild'))"))
        events = await rebuild_in(conn, batch_size)
    elapsed = time.perf_counter() - started
    log.info("read models rebuilt", events=events, seconds=round(elapsed, 3))
    return Rebuilt(events, elapsed)


async def stored_version(engine: AsyncEngine) -> int | None:
    async with engine.connect() as conn:
        query = sa.select(projection_state.c.version).where(projection_state.c.name == STATE_NAME)
        version = (await conn.execute(query)).scalar_one_or_none()
    return None if version is None else int(version)


async def rebuild_if_stale(engine: AsyncEngine, batch_size: int = 1000) -> Rebuilt | None:
    """Rebuild when the read models were built by other projection code (or never marked)."""
    if await stored_version(engine) == PROJECTION_VERSION:
        return None
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('tarjotin.reporting.rebuild'))"))
        query = sa.select(projection_state.c.version).where(projection_state.c.name == STATE_NAME)
        if (await conn.execute(query)).scalar_one_or_none() == PROJECTION_VERSION:
            return None  # another worker rebuilt while we waited
        started = time.perf_counter()
        events = await rebuild_in(conn, batch_size)
    elapsed = time.perf_counter() - started
    log.info("stale read models rebuilt", events=events, seconds=round(elapsed, 3), version=PROJECTION_VERSION)
    return Rebuilt(events, elapsed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="services.reporting.rebuild", description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="default: TARJOTIN_REPORTING_DATABASE_URL or var/data/reporting.db")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--if-stale", action="store_true", help="only when built by another projection version")
    args = parser.parse_args(argv)
    settings = Settings(database_url=args.database_url) if args.database_url else Settings()

    async def run() -> Rebuilt | None:
        engine = make_engine(settings.database_url)
        try:
            if args.if_stale:
                return await rebuild_if_stale(engine, args.batch_size)
            return await rebuild(engine, args.batch_size)
        finally:
            await engine.dispose()

    result = asyncio.run(run())
    if result is None:
        print("read models are current; nothing rebuilt")
    else:
        print(f"rebuilt read models from {result.events} events in {result.seconds:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
