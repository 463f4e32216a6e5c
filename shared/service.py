"""Building blocks of every service's composition root (`app.py`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any

import sqlalchemy as sa
import structlog
from fastapi import APIRouter, Depends, FastAPI, Request
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.middleware import Middleware

from shared import idempotency
from shared.audit import audit_router
from shared.auth import verifier_from_settings
from shared.bus import Consumer, Handler, Relay, backlog, prune_published
from shared.http import (
    NulGuardMiddleware,
    RequestContextMiddleware,
    document_problems,
    install_problem_handlers,
    ops_router,
)
from shared.settings import ServiceSettings


async def get_engine(request: Request) -> AsyncEngine:
    """Async so that FastAPI calls it on the loop, not in a worker thread."""
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
    audit: sa.Table | None = None,
    on_start: Callable[[AsyncEngine], Awaitable[None]] | None = None,
    middleware: Sequence[Middleware] = (),
) -> FastAPI:
    """A FastAPI app serving `router` under its public prefix, with ops endpoints and problem+json.

    `on_start` runs before the first request is served (warming caches); if it fails, the service starts
    anyway, and says so in its log. `middleware` runs innermost, inside the request id, access metrics
    and NUL guard, in the order given.
    """

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if on_start is not None:
            try:
                await on_start(engine)
            except Exception as exc:  # a cold cache is slower, not wrong; the database may still be starting
                structlog.get_logger("service").warning("start-up warming failed", error=repr(exc))
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
    app.state.verifier = verifier_from_settings(settings)
    install_problem_handlers(app)
    document_problems(app)

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
    if audit is not None:
        app.include_router(audit_router(audit), prefix=prefix)  # before the service's own `/{id}` routes
    app.include_router(router, prefix=prefix)
    app.include_router(ops, include_in_schema=False)  # last: no API request has to be matched against these
    for cls, args, kwargs in reversed(middleware):
        app.add_middleware(cls, *args, **kwargs)
    app.add_middleware(NulGuardMiddleware)
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
    idempotency_keys: sa.Table | None = None,
) -> list[Coroutine[Any, Any, None]]:
    """The worker's loops: the outbox relay (if the service publishes), the consumer (if it listens),
    and housekeeping (expired Idempotency-Keys, published outbox rows past their keeping time)."""
    loops: list[Coroutine[Any, Any, None]] = []
    if idempotency_keys is not None or outbox is not None:
        loops.append(_housekeeping(engine, idempotency_keys, outbox, settings.outbox_keep_days * 86400))
    relay, waking = None, None
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
        # Any commit on this engine may have staged events: wake the relay then, not at its next poll.
        waking = relay.wake_after_commits(engine)
        loops.append(relay.run())
        if waking is not None:  # PostgreSQL: the notifications of every process's commits (LISTEN/NOTIFY)
            loops.append(waking)
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
            linger_s=settings.consumer_linger_ms / 1000,
            retry_delays_ms=settings.retry_delays_ms,
            max_attempts=settings.max_attempts,
            # The consumer's commits wake the relay as every commit does, except where only a notification
            # does that (PostgreSQL) and an in-process kick would make it two.
            after_commit=relay.kick.set if relay and waking is None else None,
        )
        loops.append(consumer.run())
    return loops


async def _housekeeping(
    engine: AsyncEngine,
    idempotency_keys: sa.Table | None,
    outbox: sa.Table | None,
    outbox_keep_s: float,
    every_s: float = 3600.0,
) -> None:
    """Hourly: delete Idempotency-Keys older than 24 h and outbox rows published more than
    `outbox_keep_s` ago. Failures are logged and retried next time."""
    log = structlog.get_logger("housekeeping")
    while True:
        try:
            if idempotency_keys is not None:
                removed = await idempotency.prune(engine, idempotency_keys)
                if removed:
                    log.info("expired idempotency keys removed", count=removed)
            if outbox is not None:
                removed = await prune_published(engine, outbox, outbox_keep_s)
                if removed:
                    log.info("published outbox rows removed", count=removed)
        except Exception as exc:  # the database may be briefly away; the next round tries again
            log.warning("housekeeping failed", error=repr(exc))
        await asyncio.sleep(every_s)
