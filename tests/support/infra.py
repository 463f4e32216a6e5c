"""Real PostgreSQL databases and RabbitMQ namespaces, made per test and removed afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.bus import QueueNames
from shared.db import make_engine
from shared.migrate import upgrade

AMQP_URL = os.environ.get("TARJOTIN_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
PG_URL = os.environ.get("TARJOTIN_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432")
DB_KINDS = [k for k in os.environ.get("TARJOTIN_TEST_DBS", "sqlite,postgres").split(",") if k]
_SCALE = os.environ.get("TARJOTIN_TEST_EXAMPLES_SCALE", "1")
if not _SCALE.isdigit() or int(_SCALE) < 1:
    raise ValueError(f"TARJOTIN_TEST_EXAMPLES_SCALE must be a whole number of at least 1, not {_SCALE!r}")


def examples(count: int) -> int:
    """How many hypothesis examples a property test draws: `count` in the normal suite (bounded in time),
    times TARJOTIN_TEST_EXAMPLES_SCALE for a longer hunt (`make ordering` runs the ordering tests at 25×)."""
    return count * int(_SCALE)


ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("catalogue", "enrolment", "billing", "reporting")


def short_id() -> str:
    return uuid.uuid4().hex[:10]


@asynccontextmanager
async def database(kind: str, tmp_path: Path, name: str) -> AsyncIterator[str]:
    """A fresh, empty database of the given kind; yields its SQLAlchemy URL."""
    if kind == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / name}.db"
        return
    db = f"test_{name}_{short_id()}"
    admin = await asyncpg.connect(f"{PG_URL}/postgres")
    try:
        await admin.execute(f'CREATE DATABASE "{db}"')
    finally:
        await admin.close()
    try:
        yield f"{PG_URL.replace('postgresql:', 'postgresql+asyncpg:')}/{db}"
    finally:
        admin = await asyncpg.connect(f"{PG_URL}/postgres")
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        finally:
            await admin.close()


async def migrate(service: str, url: str) -> None:
    """Alembic upgrade head, as the service does at start (in a thread: Alembic runs its own loop)."""
    await asyncio.to_thread(upgrade, ROOT / "services" / service / "migrations", url)


@asynccontextmanager
async def migrated_engine(
    service: str, kind: str, tmp_path: Path, name: str, **engine_args: Any
) -> AsyncIterator[AsyncEngine]:
    """An engine (`shared.db.make_engine`) on a fresh database with `service`'s schema, dropped afterwards."""
    async with database(kind, tmp_path, name) as url:
        await migrate(service, url)
        engine = make_engine(url, **engine_args)
        try:
            yield engine
        finally:
            await engine.dispose()


class BusNamespace:
    """An exchange and queue prefix of their own, so tests never see each other's messages."""

    def __init__(self) -> None:
        tag = short_id()
        self.exchange = f"test.{tag}.events"
        self.prefix = f"test.{tag}"

    def queue(self, service: str) -> str:
        return f"{self.prefix}.{service}"

    async def delete(self, retry_delays_ms: tuple[int, ...] = (1000, 10000, 60000, 50, 100, 200)) -> None:
        connection = await aio_pika.connect(AMQP_URL)
        async with connection:
            for service in (*SERVICES, "probe", "test"):
                names = QueueNames(self.queue(service))
                for queue in (names.main, names.dead, *(names.retry(d) for d in retry_delays_ms)):
                    channel = await connection.channel()
                    try:
                        await channel.queue_delete(queue)
                    except Exception:
                        pass
                    finally:
                        if not channel.is_closed:
                            await channel.close()
            channel = await connection.channel()
            with contextlib.suppress(Exception):
                await channel.exchange_delete(self.exchange)


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 30, interval: float = 0.2) -> Any:
    """Poll until `check` returns something truthy; return it."""
    async with asyncio.timeout(timeout):
        while not (result := await check()):
            await asyncio.sleep(interval)
    return result
