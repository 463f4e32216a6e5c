"""CPU per report kind, in-process: fresh reporting databases seeded as `make bench` seeds them.

    python -m bench.profile_reports [--db sqlite,postgres] [--sizes 10000,1000000] [--reps 3]
    python -m bench.profile_reports --api-mix [--db sqlite] [--sizes 10000] [--reps 3]

For each database kind: migrate a fresh database, fill the read models with `bench.latency.ReportSeeder`
(the same rows as the latency bench), then at each size call every report view with the bench's mix of
parameters (every academic year, pages, groupings) and render it as JSON, as the API would. Prints the
client CPU (time.process_time) and wall time per call, median over the calls of each kind. On
PostgreSQL the wall time includes the server's work; the server's own time per statement can be read
from pg_stat_statements if it is installed. `cached` is the same mix through the API's response cache
(a generation lookup and a dictionary hit), when nothing changed in between.

`--api-mix`: instead, the reporting API itself in process (its middlewares, auth, dependencies, response
cache; no HTTP) under `make bench`'s report mix, 300 requests four at a time on a cold cache, then 300
one at a time, `--reps` rounds: latency percentiles and CPU per request, without the gateway, uvicorn
and the client sharing the two cores. What found the thread hop and the unfair pool (decision 010).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bench import asgi
from bench.latency import ReportSeeder, report_asks
from bench.system import PG_URL
from services.reporting import export, views
from services.reporting.consumers import SUBSCRIPTIONS
from services.reporting.tables import inbox
from shared.bus import Consumer
from shared.db import make_engine
from shared.http import Page
from shared.migrate import upgrade
from tests.integration.test_reporting_scenario import Network

MIGRATIONS = Path(__file__).resolve().parent.parent / "services" / "reporting" / "migrations"
Build = Callable[[AsyncConnection], Awaitable[export.Report]]


@dataclass
class FakeSystem:
    """What ReportSeeder needs of a BenchSystem: the database kind and the reporting database's URL."""

    db: str
    url: str

    def database_url(self, _service: str) -> str:
        return self.url


def calls(seeder: ReportSeeder) -> dict[str, list[tuple[tuple[Any, ...], Build]]]:
    """Every kind's calls, as bench.latency.report_asks mixes them, keyed for the response cache."""
    homes = seeder.follow_up_homes() or seeder.institutions[:1]
    out: dict[str, list[tuple[tuple[Any, ...], Build]]] = defaultdict(list)

    def add(kind: str, key: tuple[Any, ...], build: Build) -> None:
        out[kind].append((key, build))

    for year in seeder.years:
        f = views.Filters(academic_year=year)
        for n in (1, 2, 3):
            page = Page(page=n)
            add(
                "participants",
                ("participants", f, "offering", n),
                partial(views.participants, f=f, group_by="offering", page=page),
            )
        add(
            "participants",
            ("participants", f, "home_institution"),
            partial(views.participants, f=f, group_by="home_institution", page=Page()),
        )
        for group in views.COMPLETION_GROUPS:
            g = views.Filters() if group == "academic_year" else f
            add("completions", ("completions", g, group), partial(views.completions, f=g, group_by=group, page=Page()))
        for inst in (None, seeder.institutions[3]):
            build = partial(views.billing, f=f, institution=inst, period_start=None, period_end=None, page=Page())
            add("billing", ("billing", f, inst), build)
        for dims in (None, "subject,period"):
            add("supply-demand", ("supply", f, dims), partial(views.supply_demand, f=f, group_by=dims, page=Page()))
        for home in homes:
            for n in (1, 2):
                build = partial(views.follow_up, institution_id=home, f=f, page=Page(page=n))
                add("follow-up", ("follow-up", home, f, n), build)
    return out


async def measure(engine: AsyncEngine, seeder: ReportSeeder, reps: int) -> dict[str, dict[str, float]]:
    kinds = calls(seeder)
    result: dict[str, dict[str, float]] = {}
    for kind, items in kinds.items():
        cpu, wall = [], []
        for rep in range(reps + 1):
            for _key, build in items:
                c0, w0 = time.process_time(), time.perf_counter()
                async with engine.connect() as conn:
                    report = await build(conn)
                export.render(report, "json")
                if rep:  # the first round warms the statement caches
                    cpu.append(time.process_time() - c0)
                    wall.append(time.perf_counter() - w0)
        result[kind] = {"cpu_ms": 1000 * statistics.median(cpu), "wall_ms": 1000 * statistics.median(wall)}
    from services.reporting.cache import ResponseCache  # here: the module is new (A/B runs of older code)

    cache = ResponseCache(engine)
    cached, walls = [], []
    for rep in range(reps + 1):
        for items in kinds.values():
            for key, build in items:
                c0, w0 = time.process_time(), time.perf_counter()
                (await cache.answer(key, "json", build)).response()
                if rep:
                    cached.append(time.process_time() - c0)
                    walls.append(time.perf_counter() - w0)
    result["cached (all kinds)"] = {
        "cpu_ms": 1000 * statistics.median(cached),
        "wall_ms": 1000 * statistics.median(walls),
    }
    return result


async def profile(
    db: str, sizes: list[int], reps: int, workdir: Path, *, keep: bool = False, through_api: bool = False
) -> None:
    url = await _fresh_database(db, workdir, "reports")
    if keep:
        print(f"{db}: kept at {url}")
    try:
        await asyncio.to_thread(upgrade, MIGRATIONS, url)
        seeder = ReportSeeder(FakeSystem(db, url), offerings=10_000, institutions=60)  # type: ignore[arg-type]
        await seeder.reset()
        for size in sizes:
            grown = await seeder.grow_to(size)
            if through_api:
                print(f"\n{db}, {size:,} enrolments: the reporting API in process, the report mix")
                await api_mix(url, seeder, reps)
                continue
            engine = make_engine(url)
            try:
                figures = await measure(engine, seeder, reps)
            finally:
                await engine.dispose()
            print(f"\n{db}, {size:,} enrolments (seeded in {grown['seed_s']} s; rows {grown['rows']})")
            print(f"  {'report':<20} {'CPU ms':>8} {'wall ms':>8}")
            for kind, fig in figures.items():
                print(f"  {kind:<20} {fig['cpu_ms']:8.2f} {fig['wall_ms']:8.2f}")
    finally:
        if not keep:
            await _drop_database(db, url)


async def api_mix(url: str, seeder: ReportSeeder, reps: int, requests: int = 300) -> None:
    from services.reporting.app import build_api
    from services.reporting.settings import Settings
    from shared.runtime import settle_garbage_collector
    from tests.support import auth

    auth.install_env()
    app = build_api(Settings(database_url=url))
    settle_garbage_collector()  # as the service's own start does
    headers = auth.bearer("network_admin", subject="bench")
    raw = [(name.lower().encode(), value.encode()) for name, value in headers.items()]

    async def run(seed: int, n: int, concurrency: int) -> list[float]:
        asks = iter(report_asks(n, seeder, headers, seed=seed))
        took: list[float] = []

        async def client() -> None:
            for ask in asks:
                start = time.perf_counter()
                status, body = await asgi.call(app, "GET", ask.path, headers=raw)
                assert status == 200, (status, body[:300])
                took.append(time.perf_counter() - start)

        await asyncio.gather(*(client() for _ in range(concurrency)))
        return sorted(took)

    def pct(took: list[float], p: float) -> float:
        return 1000 * took[min(len(took) - 1, int(p * len(took)))]

    for _ in range(reps):
        app.state.report_cache = None  # cold, as after the read models changed
        await run(99, 20, 2)  # the statement caches, as the latency bench warms them
        for seed, concurrency in ((13, 4), (14, 1)):
            c0, w0 = time.process_time(), time.perf_counter()
            took = await run(seed, requests, concurrency)
            cpu, wall = time.process_time() - c0, time.perf_counter() - w0
            print(
                f"  c={concurrency}: p50 {pct(took, 0.5):5.1f}  p99 {pct(took, 0.99):5.1f}  "
                f"max {1000 * took[-1]:6.1f} ms  {len(took) / wall:5.0f}/s  "
                f"CPU {1000 * cpu / len(took):.2f} ms per request"
            )
    await app.state.engine.dispose()


def enrolment_events(enrolments: int, offerings: int = 200, institutions: int = 20) -> tuple[list[Any], list[Any]]:
    """Reference events, then each enrolment's events as the live system publishes them: requested,
    commitment created and accepted, confirmed."""
    n = Network()
    homes = [f"inst-{i:02d}" for i in range(institutions)]
    for slug in homes:
        n.institution(slug)
    for k in range(offerings):
        start = date(2026, 9, 1 + k % 28)
        n.publish(
            f"o-{k:04d}", homes[k % institutions], f"Kurssi {k}", "mathematics", seats=500, minimum=1, start=start
        )
    reference = list(n.events)
    for i in range(enrolments):
        eid, cid = f"e-{i:07d}", f"c-{i:07d}"
        n.enrol(eid, f"o-{i % offerings:04d}", homes[(i * 7) % institutions])
        n.commit(cid, eid, "120.00")
        n.accept(cid)
        n.confirm(eid)
    return reference, n.events[len(reference) :]


async def profile_projection(db: str, enrolments: int, workdir: Path, batch: int = 50) -> None:
    """CPU per enrolment of the reporting consumer's transaction (inbox, event store, projections), fed
    through `Consumer.apply` in batches as deliveries would arrive."""
    url = await _fresh_database(db, workdir, "projection")
    engine = make_engine(url)
    try:
        await asyncio.to_thread(upgrade, MIGRATIONS, url)
        consumer = Consumer(
            engine, inbox, SUBSCRIPTIONS, service="reporting", amqp_url="amqp://-", exchange="-", queue="-"
        )
        warm = max(enrolments // 10, batch)
        reference, events = enrolment_events(enrolments + warm)
        await consumer.apply(reference)
        per = len(events) // (enrolments + warm)
        await _apply(consumer, events[: warm * per], batch)
        c0, w0 = time.process_time(), time.perf_counter()
        await _apply(consumer, events[warm * per :], batch)
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
        print(
            f"{db}: projection of {enrolments:,} enrolments ({per} events each, batches of {batch}): "
            f"{1000 * cpu / enrolments:.2f} ms CPU per enrolment ({1000 * wall / enrolments:.2f} ms wall)"
        )
    finally:
        await engine.dispose()
        await _drop_database(db, url)


async def _apply(consumer: Any, events: list[Any], batch: int) -> None:
    for start in range(0, len(events), batch):
        errors = await consumer.apply(events[start : start + batch])
        assert not any(errors), errors


async def _fresh_database(db: str, workdir: Path, name: str) -> str:
    if db == "sqlite":
        return f"sqlite+aiosqlite:///{workdir / name}.db"
    database = f"profile_{name}_{int(time.time())}"
    admin = await asyncpg.connect(f"{PG_URL}/postgres")
    await admin.execute(f'CREATE DATABASE "{database}"')
    await admin.close()
    return f"{PG_URL.replace('postgresql:', 'postgresql+asyncpg:')}/{database}"


async def _drop_database(db: str, url: str) -> None:
    if db == "postgres":
        admin = await asyncpg.connect(f"{PG_URL}/postgres")
        await admin.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="sqlite,postgres")
    parser.add_argument("--sizes", default="10000,1000000")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--projection", type=int, metavar="N", help="instead: projection CPU over N enrolments")
    parser.add_argument("--keep", type=Path, help="keep the seeded databases (SQLite files in this folder)")
    parser.add_argument("--api-mix", action="store_true", help="instead: the API in process at c=4 and c=1")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    with tempfile.TemporaryDirectory(prefix="profile_reports_") as tmp:
        for db in args.db.split(","):
            if args.projection:
                asyncio.run(profile_projection(db, args.projection, Path(tmp)))
            else:
                workdir, keep = args.keep or Path(tmp), args.keep is not None
                asyncio.run(profile(db, sizes, args.reps, workdir, keep=keep, through_api=args.api_mix))


if __name__ == "__main__":
    main()
