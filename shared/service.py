"""Building blocks of every service's composition root (`app.py`)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Coroutine, Mapping
from contextlib import asynccontextmanager
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, FastAPI, Request
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.bus import Consumer, Handler, Relay, backlog
from shared.http import RequestContextMiddleware, install_problem_handlers, ops_router
from shared.settings import ServiceSettings


def get_engine(request: Request) -> AsyncEngine:
    engine: AsyncEngine = request.app.state.engine
    return engine


EngineDep = Annotated[AsyncEngine, Depends(get_engine)]


def make_api(
    settings: ServiceSettings,
    engine: AsyncEngine,
    router: APIRouter,
    *,
    prefix: str,
    title: str,
    description: str,
    outbox: sa.Table | None = None,
) -> FastAPI:
    """A FastAPI app serving `router` under its public prefix, with ops endpoints and problem+json."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await engine.dispose()

    app = FastAPI(
        title=title,
        description=description,
        version="0.1.0",
        lifespan=lifespan,
        openapi_url=f"{prefix}/openapi.json",
        docs_url=f"{prefix}/docs",
        redoc_url=None,
    )
    app.state.engine = engine
    app.state.settings = settings
    install_problem_handlers(app)

    async def outbox_state() -> Mapping[str, Any]:
        if outbox is None:
            return {}
        count, oldest = await backlog(engine, outbox)
        return {
            "outbox_backlog": count,
            "outbox_oldest_age_s": round(time.time() - oldest, 3) if oldest else 0,
        }

    ops = ops_router(settings.service, engine, settings.amqp_url, outbox_state)
    app.include_router(ops, prefix=prefix)
    app.include_router(ops, include_in_schema=False)
    app.include_router(router, prefix=prefix)
    app.add_middleware(RequestContextMiddleware, service=settings.service)
    return app


def make_worker(
    settings: ServiceSettings,
    engine: AsyncEngine,
    *,
    outbox: sa.Table | None,
    inbox: sa.Table | None,
    subscriptions: Mapping[str, Handler],
    binding_keys: list[str] | None = None,
) -> list[Coroutine[Any, Any, None]]:
    """The worker's loops: the outbox relay (if the service publishes) and the consumer (if it listens)."""
    loops: list[Coroutine[Any, Any, None]] = []
    relay = None
    if outbox is not None:
        relay = Relay(
            engine,
            outbox,
            service=settings.service,
            amqp_url=settings.amqp_url,
            exchange=settings.exchange,
            poll_s=settings.relay_poll_s,
            batch=settings.relay_batch,
        )
        kick = relay.kick
        # Any commit on this engine may have staged events: wake the relay now, not at its next poll.
        event.listen(engine.sync_engine, "commit", lambda _conn: kick.set())
        loops.append(relay.run())
    if inbox is not None and (subscriptions or binding_keys):
        consumer = Consumer(
            engine,
            inbox,
            subscriptions,
            service=settings.service,
            amqp_url=settings.amqp_url,
            exchange=settings.exchange,
            queue=settings.queue,
            binding_keys=binding_keys,
            prefetch=settings.prefetch,
            batch=settings.consumer_batch,
            retry_delays_ms=settings.retry_delays_ms,
            max_attempts=settings.max_attempts,
            after_commit=relay.kick.set if relay else None,
        )
        loops.append(consumer.run())
    return loops
