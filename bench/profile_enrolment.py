"""CPU per enrolment in the enrolment service, measured in process (no broker, no gateway).

For each database kind: a fresh migrated database, institutions and published offerings fed through
the consumer as the catalogue's events would be, then

(a) N `POST /api/enrolments` as the home institution's counsellor, each with its own Idempotency-Key,
    through httpx's ASGI transport (one at a time, so the figure is CPU per request, not queueing);
(b) the billing events the worker would receive for them (`commitment.accepted`, parsed from JSON as
    deliveries are) applied through `Consumer.apply` in batches of 50.

Prints process CPU ms per request / per enrolment (`time.process_time`, this process only; on
PostgreSQL the server's backends are not counted). Usage:

    .venv/bin/python -m bench.profile_enrolment [--n 2000] [--db sqlite,postgres] [--profile DIR]

With `--profile DIR` each phase also runs under cProfile (CPU time; the profiler itself inflates the
figures, compare shares, not totals) and its top functions are written there as text.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import io
import pstats
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
import sqlalchemy as sa

from services.enrolment.app import build_api
from services.enrolment.consumers import SUBSCRIPTIONS
from services.enrolment.settings import Settings
from services.enrolment.tables import enrolments, inbox, outbox
from shared.bus import Consumer
from shared.db import forget_engines, make_engine
from shared.events import CommitmentAccepted, Envelope, InstitutionRegistered, LocalizedText, new_event
from tests.integration.test_enrolment_support import offering_event
from tests.support import auth
from tests.support.infra import database, migrate

HOME = "kao"
INSTITUTIONS = {"kao": True, "edupoli": False, "sakky": True}
OFFERINGS = 20
BATCH = 50


@contextlib.contextmanager
def profiled(directory: Path | None, name: str) -> Iterator[None]:
    """cProfile on CPU time (awaits cost nothing), written to DIR/<name>.txt by cumulative time."""
    if directory is None:
        yield
        return
    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    try:
        yield
    finally:
        profiler.disable()
        directory.mkdir(parents=True, exist_ok=True)
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(80)
        (directory / f"{name}.txt").write_text(out.getvalue())


async def run_kind(kind: str, n: int, profile: Path | None) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        async with database(kind, Path(tmp), "profile_enrolment") as url:
            await migrate("enrolment", url)
            engine = make_engine(url, pool_size=10)
            consumer = Consumer(
                engine, inbox, SUBSCRIPTIONS, service="enrolment", amqp_url="amqp://unused", exchange="x", queue="q"
            )
            seed = [
                new_event(
                    InstitutionRegistered(
                        institution_id=slug, names=LocalizedText(fi=slug), kind="upper_secondary", member=member
                    ),
                    source="catalogue",
                    subject=slug,
                    sequence=1,
                    correlation_id="seed",
                )
                for slug, member in INSTITUTIONS.items()
            ]
            offerings = [f"sakky-{i:03d}" for i in range(OFFERINGS)]
            seed += [offering_event(o, seats=n // OFFERINGS + 10) for o in offerings]
            errors = await consumer.apply(seed)
            assert not any(errors), errors

            app = build_api(Settings(database_url="sqlite+aiosqlite:///unused.db"))
            app.state.engine = engine
            headers = auth.bearer("counsellor", HOME)
            bodies = [
                orjson.dumps(
                    {
                        "offering_id": offerings[i % OFFERINGS],
                        "home_institution_id": HOME,
                        "student": {"learner_id": f"L{i}", "name": f"Bench {i}", "email": f"b{i}@example.fi"},
                    }
                )
                for i in range(n)
            ]
            tag = uuid.uuid4().hex[:8]
            answers: list[dict[str, Any]] = []
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://t/api/enrolments"
            ) as client:
                warm = 50
                for i in range(warm):  # warm caches (statement caches, token, imports) before measuring
                    body = orjson.dumps(
                        {
                            "offering_id": offerings[i % OFFERINGS],
                            "home_institution_id": HOME,
                            "student": {"learner_id": f"W{i}", "name": "Warm", "email": "w@example.fi"},
                        }
                    )
                    r = await client.post(
                        "",
                        content=body,
                        headers={**headers, "Idempotency-Key": f"w{tag}-{i}", "Content-Type": "application/json"},
                    )
                    assert r.status_code == 201, r.text
                    answers.append(r.json())
                gc.collect()
                with profiled(profile, f"{kind}-api"):
                    cpu0, wall0 = time.process_time(), time.perf_counter()
                    for i, body in enumerate(bodies):
                        r = await client.post(
                            "",
                            content=body,
                            headers={**headers, "Idempotency-Key": f"{tag}-{i}", "Content-Type": "application/json"},
                        )
                        if r.status_code != 201:
                            raise AssertionError(r.text)
                        answers.append(r.json())
                    api_cpu, api_wall = time.process_time() - cpu0, time.perf_counter() - wall0

                # The client's own share: the same number of requests to a route that does nothing.
                cpu0 = time.process_time()
                for _ in range(min(n, 500)):
                    await client.get("/health")
                health_cpu = (time.process_time() - cpu0) / min(n, 500)

            payloads = []
            for a in answers:
                data = CommitmentAccepted(
                    commitment_id=str(uuid.uuid4()),
                    enrolment_id=a["id"],
                    offering_id=a["offering_id"],
                    payer_id=HOME,
                    payee_id="sakky",
                    amount=Decimal("120.00"),
                    academic_year="2026-2027",
                    decided_by="automatic",
                )
                envelope = new_event(data, source="billing", subject=data.commitment_id, sequence=2, correlation_id="c")
                payloads.append(envelope.to_json())
            warm_payloads, payloads = payloads[:warm], payloads[warm:]
            for start in range(0, len(warm_payloads), BATCH):
                await consumer.apply([Envelope.from_json(p) for p in warm_payloads[start : start + BATCH]])
            gc.collect()
            with profiled(profile, f"{kind}-worker"):
                cpu0 = time.process_time()
                for start in range(0, len(payloads), BATCH):
                    events = [Envelope.from_json(p) for p in payloads[start : start + BATCH]]
                    errors = await consumer.apply(events)
                    if any(errors):
                        raise AssertionError(errors)
                worker_cpu = time.process_time() - cpu0

            async with engine.connect() as conn:
                confirmed = (
                    await conn.execute(
                        sa.select(sa.func.count()).select_from(enrolments).where(enrolments.c.status == "confirmed")
                    )
                ).scalar_one()
                staged = (await conn.execute(sa.select(sa.func.count()).select_from(outbox))).scalar_one()
            assert confirmed == n + warm, confirmed
            assert staged == 2 * (n + warm), staged
            await engine.dispose()
            forget_engines()
    return {
        "api_cpu_ms": api_cpu / n * 1000,
        "api_wall_ms": api_wall / n * 1000,
        "health_cpu_ms": health_cpu * 1000,
        "worker_cpu_ms": worker_cpu / n * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--db", default="sqlite,postgres")
    parser.add_argument("--repeat", type=int, default=1, help="runs per database kind; the median is printed")
    parser.add_argument("--profile", type=Path, default=None)
    args = parser.parse_args()
    auth.install_env()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    for kind in args.db.split(","):
        runs = [asyncio.run(run_kind(kind, args.n, args.profile)) for _ in range(args.repeat)]
        summary = {key: round(statistics.median(r[key] for r in runs), 2) for key in runs[0]}
        print(
            f"{kind:8} n={args.n}  API {summary['api_cpu_ms']:.2f} ms CPU/request "
            f"(wall {summary['api_wall_ms']:.2f}; client + middleware floor, GET /health: "
            f"{summary['health_cpu_ms']:.2f})  worker {summary['worker_cpu_ms']:.2f} ms CPU/enrolment"
            + (
                f"  [runs: {[round(r['api_cpu_ms'], 2) for r in runs]} / "
                f"{[round(r['worker_cpu_ms'], 2) for r in runs]}]"
                if args.repeat > 1
                else ""
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
