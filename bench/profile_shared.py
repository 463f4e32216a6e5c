"""CPU cost of the shared machinery, measured in-process (time.process_time), per message and per request.

    .venv/bin/python -m bench.profile_shared [--db sqlite,postgres] [--n 3000] [--repeat 3]
                                             [--only envelope,consumer,relay,idle,http]

- envelope: `Envelope.to_json` / `from_json` of a typical event (µs each).
- consumer: N events queued in RabbitMQ, then a `Consumer` with a no-op handler drains them (inbox,
  one transaction per batch, acks, metrics); µs of this process's CPU per message, at the default
  batch (50), with batches of 5 (a trickle of traffic) and of 1 (what the saga's consumers see at 100/s).
- relay: N events staged in the outbox, then a `Relay` publishes them with confirms and marks them;
  µs per message at the default batch (500) and with batches of 5 and of 1.
- idle: an idle relay with the split-mode poll (20 ms) for a few seconds: ms of CPU per second.
- http: a trivial route called straight through ASGI (no sockets) on the app `make_api` builds
  (middlewares, problem handlers, auth) and on a bare FastAPI app with the same routes; µs per request.

Every figure is the median of --repeat runs. Other processes on the machine do not count (process CPU).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import gc
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import aio_pika
import sqlalchemy as sa
import uvloop
from fastapi import APIRouter, FastAPI
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bench import asgi
from shared import devissuer
from shared.auth import Caller
from shared.bus import Consumer, Relay, add_bus_tables, stage
from shared.bus.topology import QueueNames, declare_consumer_queues, declare_exchange
from shared.db import forget_engines, make_engine
from shared.events import Envelope, InstitutionRegistered, LocalizedText, new_event
from shared.service import make_api
from shared.settings import ServiceSettings
from tests.support import infra

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"


def sample_event(i: int = 0) -> Envelope:
    data = InstitutionRegistered(
        institution_id=f"school-{i}",
        names=LocalizedText(fi=f"Koulu {i}", en=f"School {i}"),
        kind="vocational",
        member=True,
    )
    return new_event(data, source="catalogue", subject=f"school-{i}", sequence=1, correlation_id=str(uuid.uuid4()))


def cpu_us(fn: Callable[[], object], n: int) -> float:
    gc.collect()
    started = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - started) / n * 1e6


def envelope_figures(n: int) -> dict[str, float]:
    event = sample_event()
    body = event.to_json()
    return {
        "to_json_us": cpu_us(event.to_json, n),
        "from_json_us": cpu_us(lambda: Envelope.from_json(body), n),
        "new_event_us": cpu_us(lambda: sample_event(1), n),
    }


@contextlib.asynccontextmanager
async def scratch_database(kind: str, tmp: Path) -> AsyncIterator[tuple[AsyncEngine, sa.Table, sa.Table]]:
    """A fresh database with the bus tables; yields (engine, outbox, inbox)."""
    metadata = sa.MetaData()
    outbox, inbox = add_bus_tables(metadata)
    async with infra.database(kind, tmp, f"prof_{uuid.uuid4().hex[:10]}") as url:
        engine = make_engine(url)
        try:
            async with engine.begin() as conn:
                await conn.run_sync(metadata.create_all)
            yield engine, outbox, inbox
        finally:
            await engine.dispose()
            forget_engines()


@contextlib.asynccontextmanager
async def namespace() -> AsyncIterator[tuple[str, str]]:
    """An exchange and a queue of our own; deleted afterwards."""
    tag = uuid.uuid4().hex[:10]
    exchange, queue = f"prof.{tag}.events", f"prof.{tag}.svc"
    try:
        yield exchange, queue
    finally:
        connection = await aio_pika.connect(AMQP_URL)
        async with connection:
            names = QueueNames(queue)
            for name in (names.main, names.dead, *(names.retry(d) for d in (1000, 10000, 60000))):
                channel = await connection.channel()
                with contextlib.suppress(Exception):
                    await channel.queue_delete(name)
            channel = await connection.channel()
            with contextlib.suppress(Exception):
                await channel.exchange_delete(exchange)


async def publish_events(exchange_name: str, queue: str, events: Sequence[Envelope]) -> None:
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await declare_exchange(channel, exchange_name)
        await declare_consumer_queues(channel, exchange, QueueNames(queue), ["#"], (1000, 10000, 60000))
        await asyncio.gather(
            *(
                exchange.publish(
                    aio_pika.Message(e.to_json(), message_id=e.id, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    e.routing_key,
                )
                for e in events
            )
        )


class _CountingConsumer(Consumer):
    handled = 0
    target = 0
    done: asyncio.Event

    async def handle_batch(self, channel: Any, messages: Any) -> None:
        await super().handle_batch(channel, messages)
        self.handled += len(messages)
        if self.handled >= self.target:
            self.done.set()


async def consumer_figure(kind: str, tmp: Path, n: int, batch: int) -> float:
    async def noop(_conn: AsyncConnection, _event: Envelope) -> None:
        return None

    async with scratch_database(kind, tmp) as (engine, _outbox, inbox), namespace() as (exchange, queue):
        await publish_events(exchange, queue, [sample_event(i) for i in range(n)])
        consumer = _CountingConsumer(
            engine,
            inbox,
            {"institution.registered": noop},
            service="prof",
            amqp_url=AMQP_URL,
            exchange=exchange,
            queue=queue,
            binding_keys=["#"],
            batch=batch,
        )
        consumer.target, consumer.done = n, asyncio.Event()
        gc.collect()
        started = time.process_time()
        task = asyncio.ensure_future(consumer.run())
        await asyncio.wait_for(consumer.done.wait(), 120)
        used = time.process_time() - started
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        async with engine.connect() as conn:
            count = (await conn.execute(sa.select(sa.func.count()).select_from(inbox))).scalar_one()
        assert count == n, (count, n)
    return used / n * 1e6


async def relay_figure(kind: str, tmp: Path, n: int, batch: int) -> float:
    async with scratch_database(kind, tmp) as (engine, outbox, _inbox), namespace() as (exchange, queue):
        connection = await aio_pika.connect(AMQP_URL)
        async with connection:
            channel = await connection.channel()
            ex = await declare_exchange(channel, exchange)
            sink = await channel.declare_queue(queue, durable=True, arguments={"x-queue-type": "quorum"})
            await sink.bind(ex, "#")
        events = [sample_event(i) for i in range(n)]
        for start in range(0, n, 500):
            async with engine.begin() as conn:
                await stage(conn, outbox, *events[start : start + 500])
        relay = Relay(engine, outbox, service="prof", amqp_url=AMQP_URL, exchange=exchange, batch=batch)
        sent = 0
        done = asyncio.Event()
        publish = relay.publish_batch

        async def counting(exchange_: Any) -> int:
            nonlocal sent
            count = await publish(exchange_)
            sent += count
            if sent >= n:
                done.set()
            return count

        relay.publish_batch = counting  # type: ignore[method-assign,assignment]
        gc.collect()
        started = time.process_time()
        task = asyncio.ensure_future(relay.run())
        await asyncio.wait_for(done.wait(), 120)
        used = time.process_time() - started
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return used / n * 1e6


async def idle_figure(kind: str, tmp: Path, seconds: float, poll_s: float) -> float:
    """ms of CPU per second of an idle relay (connection set-up excluded)."""
    async with scratch_database(kind, tmp) as (engine, outbox, _inbox), namespace() as (exchange, _queue):
        relay = Relay(engine, outbox, service="prof", amqp_url=AMQP_URL, exchange=exchange, poll_s=poll_s)
        task = asyncio.ensure_future(relay.run())
        await relay.connected.wait()
        await asyncio.sleep(1.0)
        started = time.process_time()
        await asyncio.sleep(seconds)
        used = time.process_time() - started
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return used / seconds * 1e3


class _ProfSettings(ServiceSettings):
    service: ClassVar[str] = "prof"


class _Body(BaseModel):
    offering_id: str
    home_institution_id: str
    note: str | None = None


def _routes() -> APIRouter:
    router = APIRouter()

    @router.get("/ping")
    async def ping() -> dict[str, bool]:
        return {"ok": True}

    @router.post("/things", status_code=201)
    async def create(body: _Body, caller: Caller) -> dict[str, str]:
        return {"id": body.offering_id, "by": caller.subject}

    return router


async def _call(app: Any, method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes) -> int:
    return (await asgi.call(app, method, path, body=body, headers=headers))[0]


async def http_figures(tmp: Path, n: int) -> dict[str, float]:
    key = devissuer.load_or_create_key(tmp / "key.pem")
    public = tmp / "public.pem"
    from cryptography.hazmat.primitives import serialization

    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    token = devissuer.mint(key, role="counsellor", institution="school-1")
    os.environ["TARJOTIN_AUTH_PUBLIC_KEY_FILE"] = str(public)
    os.environ.pop("TARJOTIN_AUTH_JWKS_URL", None)
    settings = _ProfSettings(database_url=f"sqlite+aiosqlite:///{tmp / 'http.db'}")
    engine = make_engine(settings.database_url)
    full = make_api(settings, engine, _routes(), prefix="/api/prof", title="prof", description="prof")
    bare = FastAPI()
    bare.state.verifier = full.state.verifier
    bare.include_router(_routes(), prefix="/api/prof")
    auth = [(b"authorization", f"Bearer {token}".encode()), (b"content-type", b"application/json")]
    body = b'{"offering_id": "o-1", "home_institution_id": "school-1"}'
    figures: dict[str, float] = {}
    for label, app in (("full", full), ("bare", bare)):
        for name, method, path, headers, payload, expect in (
            ("get", "GET", "/api/prof/ping", [(b"host", b"x")], b"", 200),
            ("post_auth", "POST", "/api/prof/things", [(b"host", b"x"), *auth], body, 201),
        ):
            assert await _call(app, method, path, headers, payload) == expect
            gc.collect()
            started = time.process_time()
            for _ in range(n):
                await _call(app, method, path, headers, payload)
            figures[f"{label}_{name}_us"] = (time.process_time() - started) / n * 1e6
    figures["overhead_get_us"] = figures["full_get_us"] - figures["bare_get_us"]
    figures["overhead_post_auth_us"] = figures["full_post_auth_us"] - figures["bare_post_auth_us"]
    await engine.dispose()
    forget_engines()
    return figures


async def _median(repeat: int, run: Callable[[], Awaitable[float]]) -> float:
    values = [await run() for _ in range(repeat)]
    return round(statistics.median(values), 1)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    only = set(args.only.split(","))
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="prof-shared-") as name:
        tmp = Path(name)
        if "envelope" in only:
            runs = [envelope_figures(args.n * 3) for _ in range(args.repeat)]
            out["envelope"] = {k: round(statistics.median(r[k] for r in runs), 1) for k in runs[0]}
        if "http" in only:
            runs = [await http_figures(tmp, args.n) for _ in range(args.repeat)]
            out["http"] = {k: round(statistics.median(r[k] for r in runs), 1) for k in runs[0]}
        for kind in args.db.split(","):
            if "consumer" in only:
                for batch in (50, 5, 1):
                    out[f"consumer_{kind}_batch{batch}_us_per_msg"] = await _median(
                        args.repeat, functools.partial(consumer_figure, kind, tmp, args.n, batch)
                    )
            if "relay" in only:
                for batch in (500, 5, 1):
                    out[f"relay_{kind}_batch{batch}_us_per_msg"] = await _median(
                        args.repeat, functools.partial(relay_figure, kind, tmp, args.n, batch)
                    )
            if "idle" in only:
                out[f"idle_relay_{kind}_ms_cpu_per_s"] = await _median(
                    args.repeat, functools.partial(idle_figure, kind, tmp, 5.0, 0.02)
                )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.profile_shared")
    parser.add_argument("--db", default="sqlite,postgres")
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", default="envelope,consumer,relay,idle,http")
    args = parser.parse_args()
    import structlog

    from shared.logging import configure

    configure("prof", level="WARNING")
    structlog.get_logger()
    result = uvloop.run(main_async(args))
    for key, value in result.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
