"""The command line every service shares: `migrate`, `api`, `worker`, `all`.

python -m services.enrolment migrate   # alembic upgrade head
python -m services.enrolment api       # FastAPI on uvicorn
python -m services.enrolment worker    # outbox relay + event consumers
python -m services.enrolment all       # both in one process, sharing one database engine

`all` is the default for SQLite in local runs: one process per service keeps a single writer
connection per database file (two processes would wait on each other's file locks), and every
commit wakes the relay at once. With PostgreSQL, `api` and `worker` run as separate processes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import signal
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import structlog
import uvicorn
from fastapi import FastAPI
from prometheus_client import start_http_server

from shared.logging import configure
from shared.migrate import upgrade
from shared.settings import ServiceSettings

log = structlog.get_logger("runtime")
WorkerFactory = Callable[..., list[Coroutine[Any, Any, None]]]


async def run_forever(tasks: list[Coroutine[Any, Any, None]]) -> None:
    """Run worker loops until SIGTERM/SIGINT; any loop that dies takes the worker down."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    running = [asyncio.create_task(t) for t in tasks]
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([*running, stopper], return_when=asyncio.FIRST_COMPLETED)
    for task in [*running, stopper]:
        task.cancel()
    for task in running:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    for task in done:
        if task is not stopper and task.exception():
            raise task.exception()  # type: ignore[misc]


def settle_garbage_collector() -> None:
    """Move everything loaded at start-up (modules, table metadata, pydantic schemas: most of the heap) out of
    the collector's reach, and collect young objects less often. A full collection then walks only what
    requests and caches allocated since, so it pauses the loop for less time (gc.freeze: the Instagram
    recipe, https://docs.python.org/3/library/gc.html#gc.freeze)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


def _http_options(settings: ServiceSettings) -> dict[str, Any]:
    """uvicorn's settings for a service's API, alone (`api`) or beside its worker (`all`)."""
    return {
        "host": settings.http_host,
        "port": settings.http_port,
        "http": "httptools",
        "access_log": False,
        "log_level": "warning",
        "proxy_headers": True,
        # Idle connections outlive the gateway's (shared/settings.py, http_keepalive_s).
        "timeout_keep_alive": settings.http_keepalive_s,
    }


def main(
    settings: ServiceSettings,
    migrations_dir: Path,
    build_api: Callable[[Any], FastAPI],
    build_worker: WorkerFactory,
    argv: list[str] | None = None,
) -> int:
    parser = argparse.ArgumentParser(prog=f"services.{settings.service}")
    parser.add_argument("command", choices=["migrate", "api", "worker", "all"])
    args = parser.parse_args(argv)
    configure(settings.service, level=settings.log_level, json=settings.log_json)
    if args.command == "migrate":
        upgrade(migrations_dir, settings.database_url)
        log.info("database at head", url=settings.database_url.split("@")[-1])
        return 0
    if args.command != "migrate":
        settle_garbage_collector()
    if args.command == "api":
        uvicorn.run(build_api(settings), loop="uvloop", **_http_options(settings))
        return 0
    import uvloop

    if args.command == "all":
        if "TARJOTIN_RELAY_POLL_S" not in os.environ:
            # Every commit in this process wakes the relay; the poll is only a safety net, so idle
            # services stop spending CPU on empty outbox queries.
            settings.relay_poll_s = 0.5
        app = build_api(settings)
        config = uvicorn.Config(app, loop="none", **_http_options(settings))
        loops = [uvicorn.Server(config).serve(), *build_worker(settings)]
        uvloop.run(run_forever(loops))
        return 0
    if settings.worker_metrics_port:
        start_http_server(settings.worker_metrics_port, addr=settings.http_host)
    uvloop.run(run_forever(build_worker(settings)))
    return 0
