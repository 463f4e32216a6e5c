"""CPU per catalogue search, in-process: a fresh SQLite and PostgreSQL database, ~10,000 offerings imported
the way `bench/latency.py` imports them, then a mix of searches by kind, timed with `time.process_time`
(the catalogue's own Python) and, on PostgreSQL, the CPU of the database backends serving it.

    .venv/bin/python -m bench.profile_search [--db sqlite,postgres] [--offerings 10000] [--searches 400]
        [--reuse] [--profile KIND]

Requests go straight into the ASGI app (no HTTP client or socket), so the figures are the app's own work:
FastAPI, middleware, the search and its SQL. Per kind three figures:

- `uncached`: every cache of answers and counts emptied before each request (the first search of its kind
  since the catalogue last changed; the facet columns of the catalogue as it is stay read, and the CPU of
  reading them, once per change, is a row of its own);
- `cached`: the same requests again, each already asked once (repeated searches between changes);
- `mix`: the bench's sequential mix (seed 12) after its concurrent one (seed 11), caches as they come.

`--reuse` keeps the databases between runs (SQLite under /tmp/profile_search, PostgreSQL database
`profile_search_catalogue`) and seeds them only when empty; `--profile KIND` writes a pyinstrument
profile of the uncached requests of that kind to /tmp/profile_search/KIND-<db>.html.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import sqlalchemy as sa
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from bench import asgi
from bench.latency import KINDS, REGIONS, Ask, catalogue_rows, csv_files, search_asks
from bench.system import cpu_seconds
from tests.support import auth

auth.install_env()

from services.catalogue.app import MIGRATIONS, PG_SETTINGS, build_api  # noqa: E402  (after the test key is installed)
from services.catalogue.search.facets import read_columns  # noqa: E402
from services.catalogue.settings import Settings  # noqa: E402
from services.catalogue.tables import offerings  # noqa: E402
from shared.db import make_engine  # noqa: E402
from shared.migrate import upgrade  # noqa: E402

PG_URL = os.environ.get("TARJOTIN_PG_URL", "postgresql://postgres@127.0.0.1:5432")
WORK = Path("/tmp/profile_search")
PG_DB = "profile_search_catalogue"


class Client:
    """Calls the ASGI app directly: one GET or POST, the status and body back."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        head = [(b"host", b"bench")] + [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
        if body:
            head.append((b"content-length", str(len(body)).encode()))
        return await asgi.call(self.app, method, path, body=body, headers=head)


def remove_sqlite(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def compare(answers: dict[str, str], dump: str | None, expected_in: str | None) -> dict[str, Any]:
    """Write the answers to `dump`, and/or compare them byte for byte with those in `expected_in`."""
    if dump:
        Path(dump).write_bytes(orjson.dumps(answers, option=orjson.OPT_INDENT_2))
    if not expected_in:
        return {}
    expected = orjson.loads(Path(expected_in).read_bytes())
    differ = [path for path, body in answers.items() if expected.get(path) != body]
    print(f"{len(answers) - len(differ)} answers byte-identical, {len(differ)} differ {differ[:3]}")
    return {"same": len(answers) - len(differ), "differ": differ[:5]}


async def fresh_database(kind: str, reuse: bool) -> str:
    if kind == "sqlite":
        path = WORK / "catalogue.db"
        if not reuse:
            remove_sqlite(path)
        return f"sqlite+aiosqlite:///{path}"
    admin = await asyncpg.connect(f"{PG_URL}/postgres")
    try:
        exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", PG_DB)
        if exists and not reuse:
            await admin.execute(f'DROP DATABASE "{PG_DB}" WITH (FORCE)')
        if not exists or not reuse:
            await admin.execute(f'CREATE DATABASE "{PG_DB}"')
    finally:
        await admin.close()
    return f"{PG_URL.replace('postgresql:', 'postgresql+asyncpg:')}/{PG_DB}"


async def seed(client: Client, n_offerings: int) -> dict[str, Any]:
    """40 providers through the API, then the offerings through CSV imports (as bench/latency.py)."""
    admin = auth.bearer("network_admin", subject="bench-admin")
    n_providers = max(2, min(40, n_offerings // 250))
    providers = [f"lat-p{i:02d}" for i in range(n_providers)]
    for i, slug in enumerate(providers):
        body = {
            "id": slug,
            "names": {"fi": f"Oppilaitos {i}", "en": f"Institution {i}"},
            "kind": KINDS[i % len(KINDS)],
            "member": i % 10 != 9,
            "region": REGIONS[i % len(REGIONS)],
        }
        status, text = await client.request(
            "POST", "/api/catalogue/institutions", orjson.dumps(body), {**admin, "content-type": "application/json"}
        )
        assert status in (201, 409), text
    took = []
    for data in csv_files(catalogue_rows(n_offerings, providers, date.today())):
        started = time.perf_counter()
        status, text = await client.request(
            "POST", "/api/catalogue/imports", data, {**admin, "content-type": "text/csv"}
        )
        assert status == 200, text[:2000]
        report = orjson.loads(text)
        assert not report["rejected"], report["rows"][:3]
        took.append(round(time.perf_counter() - started, 1))
    return {"imports_s": took}


async def backend_pids(dbname: str) -> list[int]:
    conn = await asyncpg.connect(f"{PG_URL}/postgres")
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", dbname
        )
    finally:
        await conn.close()
    return [row["pid"] for row in rows]


async def columns_read(engine: AsyncEngine, rounds: int = 3) -> float:
    """CPU ms (best of `rounds`) to read the facet columns: once per index generation and API process."""
    best = float("inf")
    for _ in range(rounds):
        async with engine.connect() as conn:
            started = time.process_time()
            await read_columns(conn)
            best = min(best, time.process_time() - started)
    return round(best * 1000, 1)


def clear_caches(app: FastAPI) -> None:
    """Empty every per-process search cache the app keeps on app.state."""
    for name in ("facet_cache", "search_cache", "item_cache"):
        cache = getattr(app.state, name, None)
        if cache is not None:
            cache.clear() if hasattr(cache, "clear") else cache._entries.clear()


async def timed(
    client: Client, asks: list[Ask], kind: str, before_each: Callable[[], None] | None = None
) -> tuple[float, float, list[bytes]]:
    """CPU ms per request of this process and of the PostgreSQL backends (0 on SQLite), and the bodies."""
    pids = await backend_pids(PG_DB) if kind == "postgres" else []
    db_before = sum(cpu_seconds(p) for p in pids)
    gc.collect()
    spent = 0.0
    bodies = []
    for ask in asks:
        if before_each is not None:
            before_each()
        started = time.process_time()
        status, body = await client.request("GET", ask.path)
        spent += time.process_time() - started
        assert status == 200, body[:500]
        bodies.append(body)
    db_after = sum(cpu_seconds(p) for p in pids)
    n = max(1, len(asks))
    return spent * 1000 / n, (db_after - db_before) * 1000 / n, bodies


async def best_of(
    repeat: int, client: Client, asks: list[Ask], kind: str, before_each: Callable[[], None] | None = None
) -> tuple[float, float, list[bytes]]:
    """`timed` `repeat` times: the least CPU per request of this process and of the database backends, each
    over whole passes (others' load on the machine only ever adds to CPU time)."""
    runs = [await timed(client, asks, kind, before_each) for _ in range(max(1, repeat))]
    return min(r[0] for r in runs), min(r[1] for r in runs), runs[0][2]


async def profile(
    client: Client, asks: list[Ask], kind: str, name: str, before_each: Callable[[], None] | None
) -> None:
    """A pyinstrument profile of these requests (wall clock) in WORK/name.txt and .html."""
    from pyinstrument import Profiler

    await timed(client, asks, kind, before_each)  # warm: the cached pass is then all hits
    profiler = Profiler(interval=0.0002, async_mode="enabled")
    profiler.start()
    for _ in range(5):
        await timed(client, asks, kind, before_each)
    profiler.stop()
    write_profile(name, profiler.output_text(unicode=True, show_all=True), profiler.output_html())


def write_profile(name: str, text: str, html: str) -> None:
    (WORK / f"{name}.txt").write_text(text)
    (WORK / f"{name}.html").write_text(html)


async def run(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    url = await fresh_database(kind, args.reuse)
    await asyncio.to_thread(upgrade, MIGRATIONS, url)
    app = build_api(Settings(database_url=url))
    engine = make_engine(url, pg_settings=PG_SETTINGS)  # the one `build_api` made
    app.state.engine = engine
    client = Client(app)
    seeded: dict[str, Any] = {}
    async with engine.connect() as conn:
        have = (await conn.execute(sa.select(sa.func.count()).select_from(offerings))).scalar_one()
    if have < args.offerings:
        seeded = await seed(client, args.offerings)
        if kind == "postgres" and args.analyze:
            async with engine.connect() as conn:
                await conn.execute(sa.text("ANALYZE"))
                await conn.commit()
    today = date.today()
    warm = [Ask("warm", f"/api/catalogue/offerings?q={w}&page_size=5") for w in ("a", "b", "kurssi", "course")]
    await timed(client, warm * 3, kind)
    asks = search_asks(args.searches, today, seed=12)
    by_kind: dict[str, list[Ask]] = defaultdict(list)
    for ask in asks:
        by_kind[ask.kind].append(ask)
    result: dict[str, Any] = {"db": kind, "seeded": seeded, "kinds": {}, "columns_read_ms": await columns_read(engine)}
    answers: dict[str, str] = {}
    for name in sorted(by_kind):
        group = by_kind[name]
        if args.profile == name:
            await profile(client, group, kind, f"{name}-{kind}", lambda: clear_caches(app))
            await profile(client, group, kind, f"{name}-{kind}-cached", None)
        cold, cold_db, bodies = await best_of(args.repeat, client, group, kind, lambda: clear_caches(app))
        await timed(client, group, kind)  # every answer asked once since the caches were emptied
        hot, hot_db, again = await best_of(args.repeat, client, group, kind)
        assert bodies == again, f"{name}: a cached answer differs from the computed one"
        answers.update((ask.path, body.decode()) for ask, body in zip(group, bodies, strict=True))
        hits = [orjson.loads(b)["total"] for b in bodies]
        result["kinds"][name] = {
            "n": len(group),
            "uncached": round(cold, 2),
            "uncached_db": round(cold_db, 2),
            "cached": round(hot, 2),
            "cached_db": round(hot_db, 2),
            "mean_hits": round(sum(hits) / len(hits)),
        }
    clear_caches(app)
    await timed(client, search_asks(args.searches, today, seed=11), kind)
    mix, mix_db, _ = await timed(client, asks, kind)
    clear_caches(app)
    everything, everything_db, _ = await best_of(args.repeat, client, asks, kind, lambda: clear_caches(app))
    result["mix"] = {"cpu_ms": round(mix, 2), "db_ms": round(mix_db, 2)}
    result["uncached_all"] = {"cpu_ms": round(everything, 2), "db_ms": round(everything_db, 2)}
    await engine.dispose()
    result["compared"] = compare(
        answers,
        args.dump and f"{args.dump}-{kind}.json",
        args.compare and f"{args.compare}-{kind}.json",
    )
    return result


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| db | kind | n | hits | uncached CPU ms (api + db) | cached CPU ms (api + db) |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        for name, k in r["kinds"].items():
            lines.append(
                f"| {r['db']} | {name} | {k['n']} | {k['mean_hits']} | {k['uncached']} + {k['uncached_db']} "
                f"| {k['cached']} + {k['cached_db']} |"
            )
        u = r["uncached_all"]
        lines.append(f"| {r['db']} | **all, uncached** | | | {u['cpu_ms']} + {u['db_ms']} | |")
        m = r["mix"]
        lines.append(f"| {r['db']} | **bench mix (seq after conc)** | | | | {m['cpu_ms']} + {m['db_ms']} |")
        lines.append(f"| {r['db']} | facet columns read (per index generation) | | | {r['columns_read_ms']} | |")
    return "\n".join(lines)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", default="sqlite,postgres")
    parser.add_argument("--offerings", type=int, default=10_000)
    parser.add_argument("--searches", type=int, default=400)
    parser.add_argument("--repeat", type=int, default=3, help="passes per figure; the least CPU is given")
    parser.add_argument("--reuse", action="store_true", help="keep and reuse the seeded databases")
    parser.add_argument("--profile", default=None, help="a search kind to profile with pyinstrument")
    parser.add_argument(
        "--no-analyze", dest="analyze", action="store_false", help="PostgreSQL: no ANALYZE after seeding"
    )
    parser.add_argument("--dump", default=None, help="write every answer to DUMP-<db>.json")
    parser.add_argument("--compare", default=None, help="compare every answer with COMPARE-<db>.json")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240  (once, before anything runs)
    results = []
    for kind in args.db.split(","):
        result = await run(kind, args)
        print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode(), file=sys.stderr)
        results.append(result)
    print(table(results))


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    asyncio.run(main())
