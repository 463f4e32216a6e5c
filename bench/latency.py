"""Read-path latency of issue 5: catalogue search over many offerings, reports over many enrolments.

    catalogue search p99 < 30 ms over 10,000 offerings;
    report queries p99 < 50 ms and flat from 10,000 to 1,000,000 enrolments in the read models.

Search: the catalogue is filled through its own CSV import (`POST /api/catalogue/imports`, as the network
admin, rows with `publish=true`, so every offering goes through the same code, index and events as a
provider's upload), the system is left to settle (the `offering.published` events reach enrolment and
reporting), then a mix of anonymous searches goes through the gateway: word prefixes in Finnish and
English, facets, open now, pages 1–3, sorts. The catalogue caches facet counts per index generation,
so the figures are given for all requests and for the first request of each distinct filter set
(`uncached`).

Reports: the reporting read models are filled directly in the reporting database, as the projections
would have left them after the events of N enrolments (state rows per enrolment and commitment, the
counter tables, invoices, credit notes, the reference copies of institutions and offerings), over a
fixed catalogue, first with the smallest N, then grown to each larger N. The event store is not filled:
no report reads it (a rebuild would empty these read models). After each size every report endpoint is
asked through the gateway with a network-admin token, JSON, with academic-year filters and pages.

Each mix is sent twice: with --read-concurrency connections (the figures against the targets) and one
request at a time (latency without queueing, and the CPU each kind costs the answering service process).
After a bulk load the databases are left as steady operation would leave them: PostgreSQL analysed (as
autovacuum would be within a minute or so), SQLite's write-ahead log checkpointed.
"""

from __future__ import annotations

import asyncio
import bisect
import csv
import functools
import io
import os
import random
import statistics
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import aio_pika
import asyncpg
import httpx
import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from bench.drive import collector_paused, pct, read_response
from bench.system import PG_URL, SERVICES, BenchSystem, cpu_seconds
from services.reporting import domain as reporting
from services.reporting import tables as rt
from services.reporting.handlers import RAISE_GENERATION
from shared.bus import QueueNames

SEARCH_TARGET_P99_MS = 30.0
REPORT_TARGET_P99_MS = 50.0
FLAT_RATIO = 1.5  # p99 at the largest size over p99 at the smallest: "flat" if at most this


def search_met(search: dict[str, Any]) -> bool:
    """The search figures (`measure_search`) meet the target: p99 under it, and every request answered."""
    return bool(search["p99_ms"] < SEARCH_TARGET_P99_MS and not search["errors"])


def report_size_met(size: dict[str, Any]) -> bool:
    """One read-model size's report figures meet the target: p99 under it, and every request answered."""
    return bool(size["p99_ms"] < REPORT_TARGET_P99_MS and not size["errors"])


# --- a small raw keep-alive GET client (as bench/drive.py: httpx would eat the CPU being measured) ------------


@dataclass
class Ask:
    kind: str
    path: str  # with its query string
    headers: dict[str, str] = field(default_factory=dict)
    key: Hashable = None  # requests with the same key share the catalogue's facet cache entry


@dataclass
class Answer:
    latency_ms: float
    status: int
    body: bytes


async def fetch_all(port: int, asks: Sequence[Ask], concurrency: int) -> tuple[list[Answer], float]:
    """GET every request over `concurrency` keep-alive connections, flat out; answers in request order."""
    answers: list[Answer] = [Answer(0.0, 0, b"")] * len(asks)
    counter = iter(range(len(asks)))

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for i in counter:
                ask = asks[i]
                extra = "".join(f"{k}: {v}\r\n" for k, v in ask.headers.items())
                request = f"GET {ask.path} HTTP/1.1\r\nHost: bench\r\nAccept: application/json\r\n{extra}\r\n"
                sent = time.perf_counter()
                writer.write(request.encode())
                status, body, close = await read_response(reader)
                answers[i] = Answer((time.perf_counter() - sent) * 1000, status, body)
                if close:
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
        finally:
            writer.close()

    with collector_paused():
        start = time.perf_counter()
        await asyncio.gather(*(connection() for _ in range(concurrency)))
        return answers, time.perf_counter() - start


async def cpu_now(system: BenchSystem) -> dict[str, float]:
    """CPU seconds so far of every process of the system and, on PostgreSQL, of the database server
    backends serving each service (named `<service>-postgres`), where the SQL of a request is spent."""
    found = {name: cpu_seconds(pid) for name, pid in system.pids().items()}
    if system.db == "postgres":
        conn = await asyncpg.connect(f"{PG_URL}/postgres")
        try:
            rows = await conn.fetch(
                "SELECT pid, datname FROM pg_stat_activity WHERE datname LIKE $1 AND pid <> pg_backend_pid()",
                f"{system.pg_prefix}_%",
            )
        finally:
            await conn.close()
        for row in rows:
            name = f"{row['datname'].removeprefix(system.pg_prefix + '_')}-postgres"
            found[name] = found.get(name, 0.0) + cpu_seconds(row["pid"])
    return found


def cpu_per_request(before: dict[str, float], after: dict[str, float], service: str, n: int) -> dict[str, float]:
    """CPU milliseconds per request of the processes answering for `service`: its API (API + worker in one
    process on SQLite) and, on PostgreSQL, its database backends. Other load on the machine inflates this
    much less than it does latency. (A backend that closed during the run is missed; the pools keep theirs.)"""
    wanted = [
        name
        for name in after
        if name.startswith(service) and not name.endswith("worker") and (name in before or name.endswith("postgres"))
    ]
    return {name: round(max(0.0, after[name] - before.get(name, 0.0)) * 1000 / max(1, n), 2) for name in wanted}


def summary(latencies: Sequence[float]) -> dict[str, Any]:
    return {
        "n": len(latencies),
        "p50_ms": pct(list(latencies), 50),
        "p95_ms": pct(list(latencies), 95),
        "p99_ms": pct(list(latencies), 99),
        "max_ms": round(max(latencies), 1) if latencies else 0.0,
    }


def by_kind(asks: Sequence[Ask], answers: Sequence[Answer]) -> dict[str, dict[str, Any]]:
    kinds: dict[str, list[float]] = defaultdict(list)
    for ask, answer in zip(asks, answers, strict=True):
        kinds[ask.kind].append(answer.latency_ms)
    return {kind: summary(values) for kind, values in sorted(kinds.items())}


def errors_of(asks: Sequence[Ask], answers: Sequence[Answer]) -> list[str]:
    return [
        f"{answer.status} {ask.path}: {answer.body[:200]!r}"
        for ask, answer in zip(asks, answers, strict=True)
        if answer.status != 200
    ]


# --- waiting until the system has digested what seeding caused ------------------------------------------------


async def settle(system: BenchSystem, timeout_s: float = 900.0) -> float:
    """Wait until no outbox holds unpublished events, no main queue holds ready messages and no inbox grew
    for two polls in a row; returns the seconds waited."""
    started = time.time()
    engines = {service: create_async_engine(system.database_url(service)) for service in SERVICES}
    amqp = await aio_pika.connect(os.environ.get("TARJOTIN_AMQP_URL", "amqp://guest:guest@127.0.0.1/"))
    prefix = system.env["TARJOTIN_QUEUE_PREFIX"]
    try:
        tables = {}
        for service, engine in engines.items():
            async with engine.connect() as conn:
                tables[service] = set(await conn.run_sync(lambda sync: sa.inspect(sync).get_table_names()))
        previous: Any = None
        calm = 0
        while time.time() - started < timeout_s:
            pending, inboxes = 0, []
            for service, engine in engines.items():
                async with engine.connect() as conn:
                    if "outbox" in tables[service]:
                        pending += (
                            await conn.execute(sa.text("SELECT count(*) FROM outbox WHERE published_at IS NULL"))
                        ).scalar_one()
                    if "inbox" in tables[service]:
                        inboxes.append((await conn.execute(sa.text("SELECT count(*) FROM inbox"))).scalar_one())
            ready = 0
            for service in SERVICES:
                channel = await amqp.channel()
                try:
                    queue = await channel.declare_queue(QueueNames(f"{prefix}.{service}").main, passive=True)
                    ready += queue.declaration_result.message_count or 0
                except Exception:
                    pass  # a service without subscriptions has no queue
                finally:
                    if not channel.is_closed:
                        await channel.close()
            signature = (pending, ready, tuple(inboxes))
            calm = calm + 1 if pending == 0 and ready == 0 and signature == previous else 0
            if calm >= 2:
                break
            previous = signature
            await asyncio.sleep(1.0)
    finally:
        await amqp.close()
        for engine in engines.values():
            await engine.dispose()
    return round(time.time() - started, 1)


# --- catalogue: seeding through the CSV import --------------------------------------------------------------

REGIONS = (
    "Uusimaa",
    "Pirkanmaa",
    "Varsinais-Suomi",
    "Pohjois-Pohjanmaa",
    "Keski-Suomi",
    "Pohjois-Savo",
    "Päijät-Häme",
    "Satakunta",
    "Lappi",
    "Kainuu",
    "Etelä-Savo",
    "Pohjois-Karjala",
)
KINDS = ("upper_secondary", "vocational", "vocational", "upper_secondary", "learning_centre")


@dataclass(frozen=True)
class Template:
    code: str
    subject: str
    level: str
    credits: str
    fi: str
    en: str
    languages: str = "fi"


_U, _V, _P = "upper_secondary", "vocational", "preparatory"
TEMPLATES = (
    Template("MAY", "mathematics", _U, "2.0", "Luvut ja lukujonot", "Numbers and sequences"),
    Template("MAB", "mathematics", _U, "2.0", "Lausekkeet ja yhtälöt", "Expressions and equations"),
    Template("MAA", "mathematics", _U, "3.0", "Derivaatta", "Derivatives"),
    Template("TIL", "mathematics", _U, "2.0", "Tilastot ja todennäköisyys", "Statistics and probability"),
    Template("ÄI", "mother_tongue", _U, "2.0", "Tekstien tulkinta ja kirjoittaminen", "Interpreting and writing texts"),
    Template("ENA", "english", _U, "2.0", "Englannin kieli ja maailmani", "English and my world", "en;fi"),
    Template("ENT", "english", _V, "3.0", "Englanti ja työelämä", "English for working life", "en"),
    Template("RUB", "swedish", _U, "2.0", "Ruotsin kieli ja kulttuuri", "Swedish language and culture", "sv;fi"),
    Template("FY", "physics", _U, "2.0", "Fysiikka luonnontieteenä", "Physics as a natural science"),
    Template("KE", "chemistry", _U, "2.0", "Kemiaa kaikkialla", "Chemistry everywhere"),
    Template("BI", "biology", _U, "2.0", "Ekologia ja ympäristö", "Ecology and the environment"),
    Template("GE", "geography", _U, "2.0", "Maailma muutoksessa", "A changing world"),
    Template("HI", "history", _U, "2.0", "Ihminen, ympäristö ja kulttuuri", "People, environment and culture"),
    Template("YH", "social_studies", _U, "2.0", "Taloustieto", "Economics"),
    Template("PS", "psychology", _U, "2.0", "Psykologia tieteenä", "Psychology as a science"),
    Template("FI", "philosophy", _U, "2.0", "Johdatus filosofiaan", "Introduction to philosophy"),
    Template("TE", "health_education", _U, "2.0", "Terveyden perusteet", "Foundations of health"),
    Template("EAB", "spanish", _U, "2.0", "Espanjan alkeet", "Spanish for beginners", "fi;en"),
    Template("VVA", "mother_tongue", _V, "4.0", "Viestintä ja vuorovaikutus", "Communication and interaction"),
    Template("MAT", "mathematics", _V, "4.0", "Matematiikan soveltaminen", "Applied mathematics"),
    Template("TVT", "ict", _V, "2.0", "Tieto- ja viestintätekniikka", "Information and communication technology"),
    Template("YRI", "entrepreneurship", _V, "1.0", "Yrittäjyys ja yrittäjämäinen toiminta", "Entrepreneurship"),
    Template("KEK", "sustainability", _V, "1.0", "Kestävä kehitys", "Sustainable development"),
    Template("OHJ", "programming", _V, "5.0", "Ohjelmoinnin perusteet", "Introduction to programming", "fi;en"),
    Template("TUV", "study_skills", _P, "2.0", "Opiskeluvalmiuksien vahvistaminen", "Study skills"),
    Template("SUO", "finnish_as_second_language", _P, "3.0", "Suomi toisena kielenä", "Finnish as a second language"),
)
VARIANTS = (
    ("verkkokurssi", "online course"),
    ("syventävä", "advanced"),
    ("kertauskurssi", "revision"),
    ("intensiivi", "intensive"),
    ("kesäkurssi", "summer course"),
    ("iltakurssi", "evening course"),
    ("alkeet", "basics"),
    ("jatkokurssi", "continued"),
    ("projekti", "project"),
    ("työelämäjakso", "working life period"),
)
# Word prefixes people type (accents are folded by the search: `kesta` finds `kestävä`).
WORDS_FI = (
    "matem",
    "ohjelm",
    "englan",
    "ruots",
    "fysiik",
    "kemia",
    "histor",
    "psykol",
    "filosof",
    "yrittäj",
    "äidink",
    "viest",
    "terve",
    "talous",
    "tilast",
    "deriva",
    "verkko",
    "kesä",
    "ilta",
    "alkeet",
    "kesta",
)
WORDS_EN = (
    "math",
    "program",
    "english",
    "swed",
    "physic",
    "chem",
    "histor",
    "psycho",
    "philos",
    "entrepr",
    "commun",
    "health",
    "econom",
    "statist",
    "deriv",
    "online",
    "summer",
    "evening",
    "basic",
    "sustain",
)
CSV_COLUMNS = (
    "external_id",
    "provider_id",
    "code",
    "title_fi",
    "title_en",
    "description_fi",
    "subject",
    "level",
    "credits",
    "languages",
    "delivery_mode",
    "start_date",
    "end_date",
    "enrolment_opens",
    "enrolment_closes",
    "min_participants",
    "max_participants",
    "publish",
)
# The importer takes 5,000 rows (services/catalogue/imports/csvfile.py MAX_ROWS), but such an import runs
# ~18 s on a busy 2-core machine, near nginx's proxy_read_timeout (30 s): 2,500-row files stay clear of it.
MAX_IMPORT_ROWS = 2500
MAX_IMPORT_BYTES = 1_000_000  # under its MAX_BYTES (1 MiB) and nginx's client_max_body_size 1m
DELIVERY = ("online_self_paced", "online_scheduled", "blended")


def catalogue_rows(offerings: int, providers: list[str], today: date, seed: int = 5) -> list[dict[str, str]]:
    """`offerings` CSV rows over ~offerings/3 courses (2–4 offerings each), 95 % published."""
    rng = random.Random(seed)
    n_courses = max(1, offerings // 3)
    courses = []
    for c in range(n_courses):
        t = TEMPLATES[rng.randrange(len(TEMPLATES))]
        v_fi, v_en = VARIANTS[rng.randrange(len(VARIANTS))]
        courses.append(
            {
                "provider_id": providers[c % len(providers)],
                "code": f"{t.code}{c}",
                "title_fi": f"{t.fi}: {v_fi}",
                "title_en": f"{t.en}: {v_en}",
                "description_fi": f"{v_fi.capitalize()}, {t.fi.lower()}; {t.credits} op",
                "subject": t.subject,
                "level": t.level,
                "credits": t.credits,
                "languages": t.languages,
                "delivery_mode": DELIVERY[rng.randrange(len(DELIVERY))],
            }
        )
    rows = []
    for i in range(offerings):
        course = courses[i % n_courses]
        start = today + timedelta(days=rng.randint(-150, 400))
        opens = start - timedelta(days=rng.randint(20, 120))
        closes = min(start, opens + timedelta(days=rng.randint(14, 60)))
        rows.append(
            {
                **course,
                "external_id": f"L{i}",
                "start_date": start.isoformat(),
                "end_date": (start + timedelta(days=rng.randint(30, 120))).isoformat(),
                "enrolment_opens": opens.isoformat(),
                "enrolment_closes": closes.isoformat(),
                "min_participants": str(rng.choice((1, 3, 5, 8))),
                "max_participants": str(rng.choice((15, 20, 25, 30, 40, 60, 100, 200))),
                "publish": "true" if rng.random() < 0.95 else "false",
            }
        )
    rows.sort(key=lambda row: (row["provider_id"], row["code"]))  # a course's rows together
    return rows


def csv_files(rows: list[dict[str, str]]) -> list[bytes]:
    """The rows as CSV files within the importer's limits (rows and bytes)."""

    def line(values: Sequence[str]) -> bytes:
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerow(values)
        return out.getvalue().encode()

    header = line(CSV_COLUMNS)
    files: list[bytes] = []
    current: list[bytes] = []
    size = len(header)
    for row in rows:
        text = line([row[c] for c in CSV_COLUMNS])
        if current and (len(current) >= MAX_IMPORT_ROWS or size + len(text) > MAX_IMPORT_BYTES):
            files.append(header + b"".join(current))
            current, size = [], len(header)
        current.append(text)
        size += len(text)
    if current:
        files.append(header + b"".join(current))
    return files


async def seed_catalogue(system: BenchSystem, offerings: int) -> dict[str, Any]:
    """Providers through the API, then courses and offerings through as few CSV imports as the limits allow."""
    started = time.time()
    n_providers = max(2, min(40, offerings // 250))
    providers = [f"lat-p{i:02d}" for i in range(n_providers)]
    admin = system.bearer()
    async with httpx.AsyncClient(base_url=system.url, timeout=600, headers=admin) as client:
        for i, slug in enumerate(providers):
            body = {
                "id": slug,
                "names": {"fi": f"Oppilaitos {i}", "en": f"Institution {i}"},
                "kind": KINDS[i % len(KINDS)],
                "member": i % 10 != 9,
                "region": REGIONS[i % len(REGIONS)],
            }
            response = await client.post("/api/catalogue/institutions", json=body)
            if response.status_code != 409:
                response.raise_for_status()
        rows = catalogue_rows(offerings, providers, date.today())
        files = csv_files(rows)
        imports = []
        for data in files:
            sent = time.time()
            response = await client.post(
                "/api/catalogue/imports", content=data, headers={**admin, "Content-Type": "text/csv"}
            )
            if response.status_code != 200:
                raise RuntimeError(f"import failed: {response.status_code} {response.text[:2000]}")
            report = response.json()
            if report["rejected"]:
                bad = [row for row in report["rows"] if row["errors"]][:3]
                raise RuntimeError(f"import rejected {report['rejected']} rows, e.g. {bad}")
            imports.append(
                {
                    "rows": len(report["rows"]),
                    "bytes": len(data),
                    "created": report["created"],
                    "updated": report["updated"],
                    "seconds": round(time.time() - sent, 1),
                }
            )
    imported_s = round(time.time() - started, 1)
    settle_s = await settle(system)
    if system.db == "postgres":
        # As autovacuum soon would: until then the planner takes the freshly imported search tables for
        # nearly empty and word + facet searches probe the word index once per offering (200-900 ms).
        conn = await asyncpg.connect(system.database_url("catalogue").replace("postgresql+asyncpg:", "postgresql:"))
        try:
            await conn.execute("ANALYZE")
        finally:
            await conn.close()
    published = sum(1 for row in rows if row["publish"] == "true")
    return {
        "offerings": offerings,
        "published": published,
        "providers": n_providers,
        "courses": len({(row["provider_id"], row["code"]) for row in rows}),
        "imports": imports,
        "import_s": imported_s,
        "settle_s": settle_s,
    }


def search_asks(n: int, today: date, seed: int = 11) -> list[Ask]:
    """A mix of anonymous searches, as the public catalogue page would send them."""
    rng = random.Random(seed)
    first = today.year if today.month >= 8 else today.year - 1
    years = [f"{y}-{y + 1}" for y in (first - 1, first, first + 1)]
    subjects = sorted({t.subject for t in TEMPLATES})
    levels = (_U, _V, _P)

    def word(lang: str) -> str:
        return rng.choice(WORDS_FI if lang == "fi" else WORDS_EN)

    def make() -> tuple[str, dict[str, Any]]:
        roll = rng.random()
        if roll < 0.10:
            return "browse", {}
        if roll < 0.18:
            return "browse_page2_3", {"page": rng.choice((2, 3))}
        if roll < 0.33:
            return "words_fi", {"q": word("fi")}
        if roll < 0.43:
            return "words_en", {"q": word("en")}
        if roll < 0.51:
            lang = rng.choice(("fi", "en"))
            return "two_words", {"q": f"{word(lang)} {word(lang)}"}
        if roll < 0.58:
            return "relevance", {"q": word(rng.choice(("fi", "en"))), "sort": "relevance"}
        if roll < 0.70:
            params: dict[str, Any] = {"subject": rng.choice(subjects)}
            if rng.random() < 0.5:
                params["level"] = rng.choice(levels)
            if rng.random() < 0.3:
                params["language"] = rng.choice(("fi", "en", "sv"))
            return "facets", params
        if roll < 0.80:
            return "region_year", {"region": rng.choice(REGIONS), "academic_year": rng.choice(years)}
        if roll < 0.88:
            params = {"open_now": "true"}
            if rng.random() < 0.5:
                params["subject"] = rng.choice(subjects)
            return "open_now", params
        if roll < 0.95:
            params = {"q": word(rng.choice(("fi", "en"))), "page": rng.choice((1, 1, 2))}
            facet = rng.choice(("subject", "level", "language"))
            params[facet] = {"subject": rng.choice(subjects), "level": rng.choice(levels)}.get(facet, "fi")
            return "words_facets", params
        params = {"sort": rng.choice(("title", "price", "-start_date")), "page": rng.choice((1, 2))}
        if rng.random() < 0.5:
            params["academic_year"] = rng.choice(years)
        return "sorted", params

    asks = []
    for _ in range(n):
        kind, params = make()
        facet_key = tuple(sorted((k, str(v).lower()) for k, v in params.items() if k not in ("page", "sort")))
        asks.append(Ask(kind, f"/api/catalogue/offerings?{urlencode(params)}".rstrip("?"), key=facet_key))
    return asks


@dataclass
class Pass:
    asks: list[Ask]
    answers: list[Answer]
    wall_s: float
    cpu_ms: dict[str, float]  # per kind: CPU ms per request of the service's answering process(es)
    cpu_by_process: dict[str, float] = field(default_factory=dict)  # CPU ms per request, whole pass


async def run_pass(system: BenchSystem, asks: list[Ask], concurrency: int, service: str) -> Pass:
    """All the requests at `concurrency`; sequentially (1) kind after kind, to charge each kind its CPU."""
    if concurrency > 1:
        before = await cpu_now(system)
        answers, wall_s = await fetch_all(system.gateway_port, asks, concurrency)
        by_process = cpu_per_request(before, await cpu_now(system), service, len(asks))
        return Pass(asks, answers, wall_s, {"all": round(sum(by_process.values()), 2)}, by_process)
    answers = [Answer(0.0, 0, b"")] * len(asks)
    cpu_ms, wall_s = {}, 0.0
    spent: dict[str, float] = defaultdict(float)  # CPU ms per process, all kinds
    for kind in sorted({ask.kind for ask in asks}):
        indices = [i for i, ask in enumerate(asks) if ask.kind == kind]
        before = await cpu_now(system)
        got, took = await fetch_all(system.gateway_port, [asks[i] for i in indices], 1)
        by_process = cpu_per_request(before, await cpu_now(system), service, len(indices))
        cpu_ms[kind] = round(sum(by_process.values()), 2)
        for name, ms in by_process.items():
            spent[name] += ms * len(indices)
        wall_s += took
        for i, answer in zip(indices, got, strict=True):
            answers[i] = answer
    n = max(1, len(asks))
    cpu_ms["all"] = round(sum(spent.values()) / n, 2)
    return Pass(asks, answers, wall_s, cpu_ms, {name: round(ms / n, 2) for name, ms in spent.items()})


def figures(run: Pass, concurrency: int) -> dict[str, Any]:
    errors = errors_of(run.asks, run.answers)
    return {
        "concurrency": concurrency,
        "rps": round(len(run.asks) / run.wall_s, 1) if run.wall_s else 0.0,
        "errors": len(errors),
        "error_examples": errors[:3],
        **summary([a.latency_ms for a in run.answers]),
        "cpu_ms_per_request": run.cpu_ms["all"],
        "cpu_ms_by_process": run.cpu_by_process,
        "slowest": [
            f"{answer.latency_ms:.0f} ms {ask.path}"
            for ask, answer in sorted(zip(run.asks, run.answers, strict=True), key=lambda pair: -pair[1].latency_ms)[:5]
        ],
    }


def kinds_of(concurrent: Pass, sequential: Pass) -> dict[str, dict[str, Any]]:
    """Per kind: the concurrent pass's percentiles, the sequential pass's p50/p99 and CPU per request."""
    kinds = by_kind(concurrent.asks, concurrent.answers)
    for kind, seq in by_kind(sequential.asks, sequential.answers).items():
        entry = kinds.setdefault(kind, {})
        entry.update({"seq_p50_ms": seq["p50_ms"], "seq_p99_ms": seq["p99_ms"], "cpu_ms": sequential.cpu_ms[kind]})
    return kinds


async def measure_search(system: BenchSystem, n: int, concurrency: int) -> dict[str, Any]:
    """`n` searches at `concurrency` (the figures), then `n` others one at a time (latency without queueing,
    CPU per kind). `uncached`: the first request of each filter set, whose facet counts the catalogue computes."""
    today = date.today()
    warm = [Ask("warm", f"/api/catalogue/offerings?q={w}&page_size=5") for w in ("a", "b", "kurssi", "course")]
    await fetch_all(system.gateway_port, warm * 3, 2)
    concurrent = await run_pass(system, search_asks(n, today, seed=11), concurrency, "catalogue")
    sequential = await run_pass(system, search_asks(n, today, seed=12), 1, "catalogue")
    seen: set[Hashable] = set()
    uncached: dict[int, list[float]] = {concurrency: [], 1: []}
    hits: dict[str, list[int]] = defaultdict(list)
    for level, run in ((concurrency, concurrent), (1, sequential)):
        for ask, answer in zip(run.asks, run.answers, strict=True):
            if ask.key not in seen:
                uncached[level].append(answer.latency_ms)
                seen.add(ask.key)
            if answer.status == 200:
                hits[ask.kind].append(int(orjson.loads(answer.body)["total"]))
    kinds = kinds_of(concurrent, sequential)
    for kind, found in hits.items():
        kinds[kind]["mean_hits"] = round(sum(found) / len(found), 1)
    return {
        "requests": n,
        **figures(concurrent, concurrency),
        "uncached": summary(uncached[concurrency]),
        "sequential": {**figures(sequential, 1), "uncached": summary(uncached[1])},
        "kinds": kinds,
        "target_p99_ms": SEARCH_TARGET_P99_MS,
    }


# --- reports: read models written as the projections would have written them -------------------------------

PAST_MIX = (
    ("passed", 58),
    ("failed", 7),
    ("interrupted", 6),
    ("withdrawn", 10),
    ("cancelled", 6),
    ("rejected", 4),
    ("confirmed", 7),
    ("waitlisted", 2),
)
CURRENT_MIX = (
    ("confirmed", 50),
    ("awaiting_commitment", 6),
    ("waitlisted", 8),
    ("withdrawn", 8),
    ("rejected", 4),
    ("cancelled", 4),
    ("passed", 14),
    ("failed", 3),
    ("interrupted", 3),
)
VERSION = {"awaiting_commitment": 1, "waitlisted": 1, "confirmed": 2, "rejected": 2, "cancelled": 2, "withdrawn": 3}
PRICE_PER_CREDIT_CENTS = 4000
LATE_PERCENT = 100
CHUNK = 50_000


def _cumulative(mix: Sequence[tuple[str, int]]) -> tuple[list[str], list[int]]:
    names, cum, total = [], [], 0
    for name, weight in mix:
        total += weight
        names.append(name)
        cum.append(total)
    return names, cum


@dataclass
class Offering:
    id: str
    provider: str
    year: str
    subject: str
    level: str
    credits_centi: int
    start: date
    feeders: list[str]
    past: bool
    price_cents: int = 0  # the member price
    midnight: datetime = datetime.min  # the start date at 00:00 UTC, naive


class ReportSeeder:
    """The reporting read models of a network: `institutions` over `years` academic years (the newest the
    current one) with `offerings` offerings, and a growing number of enrolments on them."""

    def __init__(self, system: BenchSystem, *, offerings: int, institutions: int, years: int = 4, seed: int = 7):
        self.system, self.rng = system, random.Random(seed)
        self.postgres = system.db == "postgres"
        today = date.today()
        self.today = today
        current = today.year if today.month >= 8 else today.year - 1
        self.years = [f"{y}-{y + 1}" for y in range(current - years + 1, current + 1)]
        self.institutions = [f"rep-{i:03d}" for i in range(institutions)]
        self.member = {inst: i % 12 != 11 for i, inst in enumerate(self.institutions)}
        self.region = {inst: REGIONS[i % len(REGIONS)] for i, inst in enumerate(self.institutions)}
        popularity = [1 / (rank + 1) ** 0.7 for rank in range(institutions)]
        rng = self.rng
        self.offerings: list[Offering] = []
        for i in range(offerings):
            year = self.years[i % len(self.years)]
            t = TEMPLATES[rng.randrange(len(TEMPLATES))]
            provider = rng.choices(self.institutions, weights=popularity)[0]
            feeders = rng.choices(self.institutions, weights=popularity, k=5)
            if rng.random() < 0.3:
                feeders.append(provider)  # its own students too
            first = int(year[:4])
            start = date(first, 8, 10) + timedelta(days=rng.randint(0, 300))
            self.offerings.append(
                Offering(
                    id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                    provider=provider,
                    year=year,
                    subject=t.subject,
                    level=t.level,
                    credits_centi=int(float(t.credits) * 100),
                    start=start,
                    feeders=feeders,
                    past=year != self.years[-1],
                    price_cents=int(float(t.credits) * PRICE_PER_CREDIT_CENTS),
                    midnight=datetime.combine(start, datetime.min.time()),
                )
            )
        # Demand: newer years busier, and a few popular offerings in each year (Zipf-like).
        year_weight = {year: 1.0 + 0.2 * k for k, year in enumerate(self.years)}
        weights = [year_weight[o.year] / (1 + (i // len(self.years)) % 97) ** 0.6 for i, o in enumerate(self.offerings)]
        self.offering_cum = list(_accumulate(weights))
        self.enrolments = 0
        self.counters: dict[tuple[int, str], list[int]] = defaultdict(lambda: [0] * len(reporting.ENROLMENT_COUNTERS))
        self.billing: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0] * len(reporting.BILLING_COUNTERS))

    # -- storage values per database kind

    def _ts(self, moment: datetime) -> Any:
        return moment if self.postgres else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")

    def _day(self, day: date) -> Any:
        return day if self.postgres else day.isoformat()

    def _url(self) -> str:
        return self.system.database_url("reporting")

    async def _write(self, table: sa.Table, rows: list[tuple[Any, ...]], *, clear: bool = False) -> None:
        columns = [c.name for c in table.columns]
        if self.postgres:
            dsn = self._url().replace("postgresql+asyncpg:", "postgresql:")
            conn = await asyncpg.connect(dsn)
            try:
                async with conn.transaction():
                    if clear:
                        await conn.execute(f"DELETE FROM {table.name}")
                    for i in range(0, len(rows), CHUNK):
                        await conn.copy_records_to_table(table.name, records=rows[i : i + CHUNK], columns=columns)
            finally:
                await conn.close()
            return
        engine = create_async_engine(self._url(), connect_args={"timeout": 60})

        @sa.event.listens_for(engine.sync_engine, "connect")
        def _seeding(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA cache_size=-262144")  # 256 MB: a million random keys stay in memory
            cursor.execute("PRAGMA synchronous=OFF")  # this connection only: a benchmark's load
            cursor.close()

        sql = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        try:
            async with engine.begin() as conn:
                if clear:
                    await conn.exec_driver_sql(f"DELETE FROM {table.name}")
                for i in range(0, len(rows), CHUNK):
                    await conn.exec_driver_sql(sql, rows[i : i + CHUNK])
        finally:
            await engine.dispose()

    async def _maintain(self) -> None:
        """Leave the database as steady operation would after such a load: PostgreSQL VACUUM ANALYZEd (as
        autovacuum soon would); SQLite's write-ahead log checkpointed into the database (the service's own
        small commits keep it short; a bulk load leaves it hundreds of MB, which every read then consults)."""
        if not self.postgres:
            engine = create_async_engine(self._url(), connect_args={"timeout": 60})
            try:
                async with engine.connect() as conn:
                    await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                await engine.dispose()
            return
        conn = await asyncpg.connect(self._url().replace("postgresql+asyncpg:", "postgresql:"))
        try:
            for table in rt.READ_MODELS:
                await conn.execute(f"VACUUM (ANALYZE) {table.name}")
        finally:
            await conn.close()

    # -- reference data

    async def reset(self) -> None:
        """Empty the read models (what earlier runs projected) and write the institutions and offerings."""
        for table in rt.READ_MODELS:
            if table is not rt.projection_state:
                await self._write(table, [], clear=True)
        await self._write(
            rt.institutions,
            [(inst, f"Oppilaitos {inst}", self.member[inst], self.region[inst], None, 1) for inst in self.institutions],
        )
        rows = []
        for o in self.offerings:
            status = "completed" if o.past else "published"
            if self.rng.random() < 0.04:
                status = "cancelled"
            elif not o.past and o.start < self.today:
                status = "closed"
            title = next(t.fi for t in TEMPLATES if t.subject == o.subject)
            rows.append(
                (
                    o.id,
                    o.provider,
                    title,
                    o.subject,
                    o.level,
                    str(o.credits_centi / 100),
                    o.year,
                    self._day(o.start),
                    self._day(o.start + timedelta(days=60)),
                    reporting.period_of(o.start),
                    self.region[o.provider],
                    self.rng.choice((20, 30, 40, 60, 100, 200)),
                    self.rng.choice((1, 3, 5, 8)),
                    1,
                    status,
                    2 if status != "published" else 1,
                )
            )
        await self._write(rt.offerings, rows)
        await self._roll_up_and_raise_generation()

    # -- enrolments

    def _chunk(self, n: int) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """`n` more enrolments (and their commitments) as state rows; the counters move with them.

        The hot loop of a 1,000,000-row seed: contributions are computed once per distinct state (with the
        reporting service's own `domain` rules) and ids and times are formatted cheaply."""
        rng, rand, bits = self.rng, self.rng.random, self.rng.getrandbits
        mixes = {True: _cumulative(PAST_MIX), False: _cumulative(CURRENT_MIX)}
        enrolment_rows, commitment_rows = [], []
        picks = rng.choices(range(len(self.offerings)), cum_weights=self.offering_cum, k=n)
        latest = datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=5)
        span = 86400 * 120
        grades = ("1", "2", "3", "4", "5", "S")
        enrolment_delta, commitment_delta = self._enrolment_delta, self._commitment_delta
        for index in picks:
            o = self.offerings[index]
            home = o.feeders[int(rand() * len(o.feeders))]
            names, cum = mixes[o.past]
            status = names[bisect.bisect_right(cum, rand() * cum[-1])]
            late = status == "withdrawn" and rand() < 0.35
            credits = o.credits_centi if status == "passed" else 0
            at = min(o.midnight + timedelta(seconds=int(rand() * span)), latest)
            version = VERSION.get(status, 3)
            prev = None if version == 1 else ("awaiting_commitment" if version == 2 else "confirmed")
            enrolment_id = _uuid(bits(128))
            follow_up, delta = enrolment_delta(status, late, credits)
            enrolment_rows.append(
                (
                    enrolment_id,
                    o.id,
                    o.provider,
                    home,
                    o.year,
                    f"st-{bits(40):010x}",
                    status,
                    late,
                    credits,
                    grades[int(rand() * 6)] if status == "passed" else None,
                    follow_up,
                    at.replace(tzinfo=UTC) if self.postgres else at.isoformat(" ", "microseconds"),
                    version,
                    prev,
                    None if prev is None else False,
                    None if prev is None else 0,
                )
            )
            vector = self.counters[(index, home)]
            for k, value in delta:
                vector[k] += value
            if status == "waitlisted":
                continue  # no commitment until a seat is offered
            amount = o.price_cents if self.member[home] else o.price_cents * 125 // 100
            commitment, chargeable, c_version = _commitment_of(status, late, amount)
            c_prev = None if c_version == 1 else ("pending" if c_version == 2 else "accepted")
            commitment_rows.append(
                (
                    _uuid(bits(128)),
                    enrolment_id,
                    o.id,
                    home,
                    o.provider,
                    o.year,
                    amount,
                    chargeable,
                    commitment,
                    c_version,
                    c_prev,
                    None if c_prev is None else amount,
                    None if c_prev is None else 0,
                )
            )
            billing = self.billing[(o.year, o.provider, home)]
            for k, value in commitment_delta(commitment, amount, chargeable):
                billing[k] += value
        # In key order, so that SQLite inserts walk the primary-key B-tree instead of jumping about it.
        enrolment_rows.sort(key=lambda row: row[0])
        commitment_rows.sort(key=lambda row: row[0])
        return enrolment_rows, commitment_rows

    @functools.cache  # noqa: B019 - one seeder per run, a handful of distinct states
    def _enrolment_delta(self, status: str, late: bool, credits: int) -> tuple[bool, tuple[tuple[int, int], ...]]:
        state = reporting.EnrolmentState(status, late, credits)
        contribution = reporting.enrolment_contribution(state)
        index = reporting.ENROLMENT_COUNTERS.index
        return reporting.needs_follow_up(state), tuple((index(name), v) for name, v in contribution.items())

    @functools.cache  # noqa: B019
    def _commitment_delta(self, status: str, amount: int, chargeable: int) -> tuple[tuple[int, int], ...]:
        contribution = reporting.commitment_contribution(reporting.CommitmentState(status, amount, chargeable))
        return tuple((reporting.BILLING_COUNTERS.index(name), v) for name, v in contribution.items())

    def _counter_rows(self) -> dict[sa.Table, list[tuple[Any, ...]]]:
        width = len(reporting.ENROLMENT_COUNTERS)
        per_offering: dict[int, list[int]] = {i: [0] * width for i in range(len(self.offerings))}
        per_pair: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0] * width)
        pairs = []
        for (index, home), vector in self.counters.items():
            o = self.offerings[index]
            pairs.append((o.id, home, o.provider, o.year, *vector))
            for target in (per_offering[index], per_pair[(o.year, home, o.provider)]):
                for k, value in enumerate(vector):
                    target[k] += value
        return {
            rt.offering_counts: [
                (self.offerings[i].id, self.offerings[i].provider, self.offerings[i].year, *vector)
                for i, vector in per_offering.items()
            ],
            rt.offering_home_counts: pairs,
            rt.home_provider_counts: [(*key, *vector) for key, vector in per_pair.items()],
            rt.billing_counts: [(*key, *vector) for key, vector in self.billing.items()],
        }

    def _documents(self) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """Invoices of the chargeable commitments per (year, payee, payer): two a year, one so far this year;
        a credit note for a few of them."""
        rng = random.Random(len(self.billing) * 31 + self.enrolments)
        chargeable_count = reporting.BILLING_COUNTERS.index("chargeable_count")
        chargeable_cents = reporting.BILLING_COUNTERS.index("chargeable_cents")
        invoices, notes = [], []
        serial = 0
        for (year, payee, payer), vector in sorted(self.billing.items()):
            count, cents = vector[chargeable_count], vector[chargeable_cents]
            if not count:
                continue
            first = int(year[:4])
            dates = [date(first, 12, 15), date(first + 1, 5, 31)]
            dates = [d for d in dates if d < self.today] or [self.today - timedelta(days=1)]
            for k, issued in enumerate(dates):
                serial += 1
                part_count = count // len(dates) + (count % len(dates) if k == 0 else 0)
                part = cents // len(dates) + (cents % len(dates) if k == 0 else 0)
                if not part_count:
                    continue
                invoice_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
                issued_at = datetime.combine(issued, datetime.min.time(), UTC) + timedelta(hours=9)
                start = issued - timedelta(days=150)
                invoices.append(
                    (
                        invoice_id,
                        f"{payee}-{serial:07d}",
                        payee,
                        payer,
                        part,
                        part_count,
                        self._day(start),
                        self._day(issued),
                        self._ts(issued_at),
                        reporting.academic_year_of(issued_at),
                    )
                )
                if rng.random() < 0.03:
                    noted = issued_at + timedelta(days=20)
                    notes.append(
                        (
                            str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                            f"CN-{payee}-{serial:07d}",
                            invoice_id,
                            payee,
                            payer,
                            part // 10,
                            self._ts(noted),
                            reporting.academic_year_of(noted),
                        )
                    )
        return invoices, notes

    @staticmethod
    def _document_counts(invoices: list[tuple[Any, ...]], notes: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """`document_counts` rows as the invoice and credit-note projections count them."""
        counts: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
        for _id, _number, payee, payer, total, *_rest, year in invoices:
            vector = counts[(year, payee, payer)]
            vector[0] += 1
            vector[1] += total
        for _id, _number, _invoice, payee, payer, total, _at, year in notes:
            vector = counts[(year, payee, payer)]
            vector[2] += 1
            vector[3] += total
        return [(*key, *vector) for key, vector in counts.items()]

    async def _run(self, *statements: sa.Executable) -> None:
        engine = create_async_engine(self._url(), connect_args={"timeout": 60})
        try:
            async with engine.begin() as conn:
                for statement in statements:
                    await conn.execute(statement)
        finally:
            await engine.dispose()

    async def raise_generation(self) -> None:
        """As the projections do with every change: the reporting API's cached answers are then outdated."""
        await self._run(RAISE_GENERATION)

    async def _roll_up_and_raise_generation(self) -> None:
        """Fill the per-institution roll-ups from the pair tables just written (`tables.fill_rollups`: what the
        projections add to them, summed), and raise the generation, in one transaction."""
        await self._run(*(table.delete() for table in rt.ROLLUPS), *rt.fill_rollups(), RAISE_GENERATION)

    async def grow_to(self, total: int) -> dict[str, Any]:
        """Add enrolments until there are `total`; rewrite the counters and documents; returns timings."""
        started = time.time()
        generate_s = 0.0
        while self.enrolments < total:
            n = min(CHUNK * 4, total - self.enrolments)
            t0 = time.time()
            enrolment_rows, commitment_rows = self._chunk(n)
            generate_s += time.time() - t0
            await self._write(rt.enrolment_states, enrolment_rows)
            await self._write(rt.commitment_states, commitment_rows)
            self.enrolments += n
        counters = self._counter_rows()
        for table, rows in counters.items():
            await self._write(table, rows, clear=True)
        invoices, notes = self._documents()
        await self._write(rt.invoices, invoices, clear=True)
        await self._write(rt.credit_notes, notes, clear=True)
        await self._write(rt.document_counts, self._document_counts(invoices, notes), clear=True)
        await self._roll_up_and_raise_generation()
        written_s = time.time() - started
        await self._maintain()
        counts = {table.name: len(r) for table, r in counters.items()}
        counts.update({"invoices": len(invoices), "credit_notes": len(notes)})
        return {
            "seed_s": round(time.time() - started, 1),
            "generate_s": round(generate_s, 1),
            "write_s": round(written_s - generate_s, 1),
            "rows": counts,
        }

    def follow_up_homes(self) -> list[str]:
        """Home institutions with the most students (the follow-up lists that are longest)."""
        size: dict[str, int] = defaultdict(int)
        for (_index, home), vector in self.counters.items():
            size[home] += vector[0]
        return sorted(size, key=lambda home: -size[home])[:3]


def _uuid(value: int) -> str:
    """A version-4-shaped UUID string from 128 random bits (cheaper than uuid.UUID for a million rows)."""
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"


def _accumulate(values: Sequence[float]) -> list[float]:
    total, out = 0.0, []
    for value in values:
        total += value
        out.append(total)
    return out


def _commitment_of(status: str, late: bool, amount: int) -> tuple[str, int, int]:
    """The commitment status, chargeable cents and version that go with an enrolment's status."""
    if status == "awaiting_commitment":
        return "pending", 0, 1
    if status == "confirmed":
        return "accepted", 0, 2
    if status == "rejected":
        return "rejected", 0, 2
    if status in reporting.OUTCOMES or (status == "withdrawn" and late):
        charged = amount if status != "withdrawn" else amount * LATE_PERCENT // 100
        return "chargeable", charged, 3
    return "voided", 0, 3  # withdrawn in time, or cancelled


def report_asks(n: int, seeder: ReportSeeder, auth: dict[str, str], seed: int = 13) -> list[Ask]:
    """`n` report requests, about evenly over the five endpoints, with year filters, groupings and pages."""
    rng = random.Random(seed)
    years = seeder.years
    homes = seeder.follow_up_homes() or seeder.institutions[:1]

    def make(endpoint: str) -> tuple[str, dict[str, Any]]:
        year = rng.choice(years)
        if endpoint == "participants":
            if rng.random() < 0.2:
                return "/api/reports/participants", {"academic_year": year, "group_by": "home_institution"}
            return "/api/reports/participants", {"academic_year": year, "page": rng.choice((1, 1, 2, 3))}
        if endpoint == "completions":
            group = rng.choice(("offering", "provider", "home_institution", "subject", "academic_year"))
            params: dict[str, Any] = {"group_by": group, "page": rng.choice((1, 1, 2))}
            if group != "academic_year":
                params["academic_year"] = year
            return "/api/reports/completions", params
        if endpoint == "billing":
            params = {"academic_year": year}
            if rng.random() < 0.3:
                params["institution"] = rng.choice(seeder.institutions)
            return "/api/reports/billing", params
        if endpoint == "supply-demand":
            params = {"academic_year": year}
            if rng.random() < 0.3:
                params["group_by"] = "subject,period"
            return "/api/reports/supply-demand", params
        return f"/api/reports/follow-up/{rng.choice(homes)}", {"academic_year": year, "page": rng.choice((1, 1, 2))}

    endpoints = ("participants", "completions", "billing", "supply-demand", "follow-up")
    asks = []
    for i in range(n):
        endpoint = endpoints[i % len(endpoints)]
        path, params = make(endpoint)
        asks.append(Ask(endpoint, f"{path}?{urlencode(params)}", headers=auth))
    rng.shuffle(asks)
    return asks


COLD_PASSES = 3
"""How many times the concurrent report pass runs, each on emptied answer caches: a p99 per endpoint over 60
requests is their slowest one, over 180 the second slowest."""


def merged(passes: Sequence[Pass]) -> Pass:
    """Passes of the same size as one: every request, the time of all, the CPU per request on average."""
    names = {name for run in passes for name in run.cpu_by_process}
    return Pass(
        [ask for run in passes for ask in run.asks],
        [answer for run in passes for answer in run.answers],
        sum(run.wall_s for run in passes),
        {"all": round(statistics.fmean(run.cpu_ms["all"] for run in passes), 2)},
        {name: round(statistics.fmean(run.cpu_by_process.get(name, 0.0) for run in passes), 2) for name in names},
    )


async def measure_reports(system: BenchSystem, seeder: ReportSeeder, n: int, concurrency: int) -> dict[str, Any]:
    auth = system.bearer()
    await fetch_all(system.gateway_port, report_asks(20, seeder, auth, seed=99), 2)  # warm the statement caches
    passes = []
    for k in range(COLD_PASSES):
        if k:
            await seeder.raise_generation()  # as a projection would: every cached answer is outdated
        passes.append(await run_pass(system, report_asks(n, seeder, auth, seed=13), concurrency, "reporting"))
    concurrent = merged(passes)
    sequential = await run_pass(system, report_asks(n, seeder, auth, seed=14), 1, "reporting")
    return {
        "enrolments": seeder.enrolments,
        "requests": n,
        "cold_passes": COLD_PASSES,
        **figures(concurrent, concurrency),
        "sequential": figures(sequential, 1),
        "endpoints": kinds_of(concurrent, sequential),
    }


async def bench_reports(
    system: BenchSystem,
    sizes: Sequence[int],
    *,
    offerings: int,
    institutions: int,
    requests: int,
    concurrency: int,
    log: Callable[[str], None],
) -> dict[str, Any]:
    seeder = ReportSeeder(system, offerings=offerings, institutions=institutions)
    started = time.time()
    await seeder.reset()
    reference_s = round(time.time() - started, 1)
    results = []
    for size in sorted(sizes):
        log(f"reports: growing the read models to {size:,} enrolments")
        grown = await seeder.grow_to(size)
        log(f"reports: {size:,} enrolments written in {grown['seed_s']} s; measuring")
        results.append({**grown, **await measure_reports(system, seeder, requests, concurrency)})

    def overall(size: dict[str, Any], key: str) -> float:
        """The whole mix's figure for an endpoint figure `key`."""
        return {"p99_ms": size["p99_ms"], "seq_p99_ms": size["sequential"]["p99_ms"]}.get(
            key, size["sequential"]["cpu_ms_per_request"]
        )

    def ratios(small: dict[str, Any], large: dict[str, Any], key: str) -> dict[str, float | None]:
        """`key` at the largest size over `key` at the smallest, per endpoint and overall."""
        out: dict[str, float | None] = {}
        for endpoint, figures in large["endpoints"].items():
            base = small["endpoints"].get(endpoint, {}).get(key) or 0
            out[endpoint] = round(figures[key] / base, 2) if base and key in figures else None
        base, top = overall(small, key), overall(large, key)
        out["overall"] = round(top / base, 2) if base else None
        return out

    flat: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    if len(results) > 1:
        flat = ratios(results[0], results[-1], "p99_ms")
        extra = {
            "seq_p99_ratio_largest_to_smallest": ratios(results[0], results[-1], "seq_p99_ms"),
            "cpu_ratio_largest_to_smallest": ratios(results[0], results[-1], "cpu_ms"),
        }
    return {
        "offerings": offerings,
        "institutions": institutions,
        "academic_years": seeder.years,
        "reference_s": reference_s,
        "sizes": results,
        "p99_ratio_largest_to_smallest": flat,
        **extra,
        "flat": all(r is not None and r <= FLAT_RATIO for r in flat.values()) if flat else None,
        "target_p99_ms": REPORT_TARGET_P99_MS,
    }


async def bench_latency(
    system: BenchSystem,
    *,
    offerings: int,
    searches: int,
    report_sizes: Sequence[int],
    report_offerings: int,
    report_institutions: int,
    report_requests: int,
    concurrency: int,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """The catalogue search and report figures of one running system."""
    log(f"search: importing {offerings:,} offerings")
    seeded = await seed_catalogue(system, offerings)
    log(f"search: imported in {seeded['import_s']} s, settled in {seeded['settle_s']} s; measuring")
    search = {**seeded, **await measure_search(system, searches, concurrency)}
    reports = await bench_reports(
        system,
        report_sizes,
        offerings=report_offerings,
        institutions=report_institutions,
        requests=report_requests,
        concurrency=concurrency,
        log=log,
    )
    return {"search": search, "reports": reports}


def latency_table(results: list[dict[str, Any]]) -> str:
    """Per database: search and each report size, overall and per kind; `c=N` percentiles with N connections,
    `c=1` one request at a time; CPU is the answering service process's, per request (c=1)."""
    c = next((r["latency"]["search"]["concurrency"] for r in results if r.get("latency")), 4)
    lines = [
        f"{'db':9} {'read path':34} {'n':>5} {f'c={c} p50':>8} {'p95':>7} {'p99':>7} {'c=1 p50':>8} {'p99':>7} "
        f"{'cpu ms':>7} {'target':>7} {'ok':>3}"
    ]

    def row(db: str, label: str, f: dict[str, Any], seq: dict[str, Any], target: str = "", ok: str = "") -> str:
        return (
            f"{db:9} {label:34} {f.get('n', 0):>5} {f.get('p50_ms', ''):>8} {f.get('p95_ms', ''):>7} "
            f"{f.get('p99_ms', ''):>7} {seq.get('p50_ms', ''):>8} {seq.get('p99_ms', ''):>7} "
            f"{seq.get('cpu_ms_per_request', ''):>7} {target:>7} {ok:>3}"
        )

    def kind_row(db: str, label: str, k: dict[str, Any]) -> str:
        seq = {"p50_ms": k.get("seq_p50_ms", ""), "p99_ms": k.get("seq_p99_ms", ""), "cpu_ms_per_request": k["cpu_ms"]}
        return row(db, label, k, seq)

    notes = []
    for r in results:
        latency = r.get("latency")
        if not latency:
            continue
        db = r["db"]
        s = latency["search"]
        ok = "yes" if search_met(s) else "no"
        lines.append(row(db, f"search, {s['published']:,} published", s, s["sequential"], "< 30", ok))
        lines.append(row(db, "  first of each filter set", s["uncached"], s["sequential"]["uncached"]))
        for kind, k in s["kinds"].items():
            lines.append(kind_row(db, f"  {kind}", k))
        notes.append(
            f"{db}: search seeding {s['import_s']} s in {len(s['imports'])} imports + {s['settle_s']} s until "
            "the offering events were consumed"
        )
        reports = latency["reports"]
        for size in reports["sizes"]:
            ok = "yes" if report_size_met(size) else "no"
            label = f"reports, {size['enrolments']:,} enrolments"
            lines.append(row(db, label, size, size["sequential"], "< 50", ok))
            for endpoint, e in size["endpoints"].items():
                lines.append(kind_row(db, f"  {endpoint}", e))
            notes.append(f"{db}: {size['enrolments']:,} enrolments' read models written in {size['seed_s']} s")
        ratios = reports["p99_ratio_largest_to_smallest"]
        if ratios:
            text = ", ".join(f"{k} {v}" for k, v in ratios.items())
            notes.append(f"{db}: reports flat (c={c} p99 largest/smallest ≤ {FLAT_RATIO}): {reports['flat']}: {text}")
            for label, key in (
                ("c=1 p99", "seq_p99_ratio_largest_to_smallest"),
                ("CPU", "cpu_ratio_largest_to_smallest"),
            ):
                text = ", ".join(f"{k} {v}" for k, v in reports[key].items())
                notes.append(f"{db}:   {label} largest/smallest: {text}")
    return "\n".join([*lines, "", *notes])
