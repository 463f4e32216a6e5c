"""CPU that billing's worker spends per enrolment, measured in-process without a broker.

    python -m bench.profile_billing [--db sqlite,postgres] [--n 2000] [--batch 50] [--budget]
                                    [--lifecycle] [--profile DIR] [--repeat 1]

For each database kind: a fresh database migrated as the service does at start, two member institutions
(a provider and a home institution in automatic mode, as `make bench` sets them up; `--budget` gives the
home institution a yearly budget large enough to accept every commitment, so the budget is summed each
time), then N `enrolment.requested` deliveries through billing's own `Consumer.apply()` in batches of
`--batch`, each message parsed from its JSON body first as a delivery is. Billing listens to no other
event of an enrolment's way to confirmed. `--lifecycle` then feeds one `enrolment.completed` per enrolment
(the commitment becomes chargeable) and reports it separately.

Printed per phase: process CPU (all threads, so aiosqlite's too) in ms per enrolment, and on PostgreSQL
the CPU of the database's backends (from /proc, 10 ms ticks) per enrolment. `--profile DIR` writes a
pyinstrument HTML profile of each phase. The relay's publishing is not part of this (see shared/bus).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import sqlalchemy as sa
import uvloop
from sqlalchemy.ext.asyncio import AsyncEngine

from services.billing import domain, handlers
from services.billing.consumers import SUBSCRIPTIONS
from services.billing.tables import commitments, inbox, outbox
from shared.bus import Consumer
from shared.db import forget_engines, make_engine
from shared.events import (
    EnrolmentCompleted,
    EnrolmentRequested,
    Envelope,
    EventData,
    InstitutionRegistered,
    LocalizedText,
    new_event,
)
from tests.support import infra

YEAR = "2026-2027"
TICK = os.sysconf("SC_CLK_TCK")


@contextlib.asynccontextmanager
async def fresh_database(kind: str, folder: Path) -> AsyncIterator[tuple[str, str | None]]:
    """A new, migrated billing database; yields its URL and (PostgreSQL) its name."""
    async with infra.database(kind, folder, "billing") as url:
        await infra.migrate("billing", url)
        yield url, (None if kind == "sqlite" else url.rsplit("/", 1)[1])


async def backend_cpu_s(database: str | None) -> float:
    """CPU seconds used so far by the PostgreSQL backends connected to `database` (0 for SQLite)."""
    if database is None:
        return 0.0
    admin = await asyncpg.connect(f"{infra.PG_URL}/postgres")
    try:
        pids = [r["pid"] for r in await admin.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1", database)]
    finally:
        await admin.close()
    return sum(map(_cpu_ticks, pids)) / TICK


def _cpu_ticks(pid: int) -> int:
    """utime + stime of a local process, in clock ticks (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def envelope(data: EventData, subject: str, sequence: int, source: str = "enrolment") -> bytes:
    return new_event(data, source=source, subject=subject, sequence=sequence, correlation_id=f"c-{subject}").to_json()


def institution(slug: str) -> bytes:
    data = InstitutionRegistered(
        institution_id=slug, names=LocalizedText(fi=slug), kind="upper_secondary", member=True, municipality=None
    )
    return envelope(data, slug, 1, source="catalogue")


def enrolments(n: int) -> list[dict[str, Any]]:
    return [
        {
            "enrolment_id": str(uuid.uuid4()),
            "offering_id": f"offering-{i % 40}",
            "provider_id": "bench-provider",
            "home_institution_id": "bench-home",
            "student_ref": f"s-{i}",
            "academic_year": YEAR,
        }
        for i in range(n)
    ]


async def feed(consumer: Consumer, bodies: list[bytes], batch: int) -> None:
    """Deliver `bodies` in batches, parsing each as the consumer parses a delivery."""
    for start in range(0, len(bodies), batch):
        events = [Envelope.from_json(body) for body in bodies[start : start + batch]]
        errors = await consumer.apply(events)
        failed = [e for e in errors if e is not None]
        if failed:
            raise RuntimeError(f"{len(failed)} events failed, first: {failed[0]!r}")


async def measure(
    label: str, run: Callable[[], Awaitable[None]], n: int, database: str | None, profile: Path | None
) -> dict[str, float]:
    profiler: Any = None
    if profile is not None:
        from pyinstrument import Profiler

        profiler = Profiler(async_mode="disabled", interval=0.0005)
        profiler.start()
    backend_before = await backend_cpu_s(database)
    cpu_before, wall_before = time.process_time(), time.perf_counter()
    await run()
    cpu, wall = time.process_time() - cpu_before, time.perf_counter() - wall_before
    backend = await backend_cpu_s(database) - backend_before
    if profiler is not None:
        assert profile is not None
        profiler.stop()
        print(f"  profile: {_write(profile / f'billing-{label}.html', profiler.output_html())}")
    result = {"process_ms": cpu * 1000 / n, "backend_ms": backend * 1000 / n, "wall_ms": wall * 1000 / n}
    extra = f", PostgreSQL backends {result['backend_ms']:.2f} ms" if database else ""
    print(f"  {label}: process CPU {result['process_ms']:.2f} ms per enrolment{extra} (wall {result['wall_ms']:.2f})")
    return result


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


async def check(engine: AsyncEngine, n: int, lifecycle: bool) -> None:
    """What billing did is what it should have: every commitment accepted (or chargeable), two events each."""
    async with engine.connect() as conn:
        counted = await conn.execute(sa.select(commitments.c.status, sa.func.count()).group_by(commitments.c.status))
        statuses: dict[str, int] = {status: count for status, count in counted}
        staged = (await conn.execute(sa.select(sa.func.count()).select_from(outbox))).scalar_one()
    wanted = {domain.Status.CHARGEABLE: n} if lifecycle else {domain.Status.ACCEPTED: n}
    assert statuses == wanted, statuses
    assert staged == n * (3 if lifecycle else 2), staged


async def run_kind(kind: str, args: argparse.Namespace) -> None:
    print(f"{kind}: {args.n} enrolments, batches of {args.batch}{', with a budget' if args.budget else ''}")
    with tempfile.TemporaryDirectory() as tmp:
        async with fresh_database(kind, Path(tmp)) as (url, database):
            engine = make_engine(url)
            try:
                consumer = Consumer(engine, inbox, SUBSCRIPTIONS, service="billing", amqp_url="", exchange="", queue="")
                await feed(consumer, [institution("bench-provider"), institution("bench-home")], 2)
                if args.budget:
                    async with engine.begin() as conn:
                        await handlers.set_policy(conn, "bench-home", domain.Mode.AUTOMATIC, Decimal("99999999.00"))
                facts = enrolments(args.n)
                requested = [
                    envelope(
                        EnrolmentRequested(
                            **f,
                            member_price=Decimal("120.00"),
                            external_price=Decimal("150.00"),
                            free_cancellation_deadline=date(2026, 9, 14),
                        ),
                        f["enrolment_id"],
                        1,
                    )
                    for f in facts
                ]
                await measure(
                    "requested", lambda: feed(consumer, requested, args.batch), args.n, database, args.profile
                )
                if args.lifecycle:
                    completed = [
                        envelope(
                            EnrolmentCompleted(**f, outcome="passed", charge_percent=Decimal(100)),
                            f["enrolment_id"],
                            3,
                        )
                        for f in facts
                    ]
                    await measure(
                        "completed", lambda: feed(consumer, completed, args.batch), args.n, database, args.profile
                    )
                await check(engine, args.n, args.lifecycle)
            finally:
                await engine.dispose()
                forget_engines()


async def main(args: argparse.Namespace) -> None:
    for _ in range(args.repeat):
        for kind in args.db.split(","):
            await run_kind(kind, args)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", default="sqlite,postgres")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--budget", action="store_true")
    parser.add_argument("--lifecycle", action="store_true")
    parser.add_argument("--profile", type=Path, default=None)
    parser.add_argument("--repeat", type=int, default=1)
    uvloop.run(main(parser.parse_args()))
