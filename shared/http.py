"""HTTP plumbing for every service: problem+json errors, request ids, metrics, health and readiness."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any, Generic, TypeVar
from urllib.parse import urlparse

import structlog
from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import Counter, Histogram
from pydantic import BaseModel, Field
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared import metrics
from shared.db import ping
from shared.errors import DomainError

log = structlog.get_logger("http")
PROBLEM = "application/problem+json"
STATUS_BY_KIND = {"unauthenticated": 401, "forbidden": 403, "not_found": 404, "conflict": 409, "invalid": 422}
TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Unprocessable request",
    429: "Too many requests",
    500: "Internal error",
    503: "Service unavailable",
}


def problem(
    status: int, detail: str, *, title: str | None = None, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    """An RFC 9457 problem details response."""
    body = {
        "type": "about:blank",
        "title": title or TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        **extra,
    }
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    if request_id:
        body["request_id"] = request_id
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or str(loc[0] if loc else "request")


def install_problem_handlers(app: FastAPI) -> None:
    """Every error leaves as problem+json with a message a person can act on."""

    async def on_validation(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return problem(
                400,
                "The request body is not valid JSON.",
                errors=[{"field": "body", "message": str(e.get("ctx", {}).get("error", e.get("msg")))} for e in errors],
            )
        listed = [{"field": _field(tuple(e.get("loc", ()))), "message": e.get("msg", "")} for e in errors]
        summary = "; ".join(f"{e['field']}: {e['message']}" for e in listed[:5])
        return problem(422, f"The request has invalid fields: {summary}.", errors=listed)

    async def on_domain(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, DomainError)
        status = STATUS_BY_KIND.get(exc.kind, 422)
        extra: dict[str, Any] = {k: v for k, v in exc.details.items() if v is not None}
        headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'} if status == 401 else None
        return problem(status, exc.message, headers=headers, **extra)

    async def on_http(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        detail = exc.detail if isinstance(exc.detail, str) else "Request failed."
        if exc.status_code == 404 and detail == "Not Found":
            detail = "No such resource here; see /openapi.json for the paths this service answers."
        return problem(exc.status_code, detail)

    async def on_database(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, DBAPIError)
        if not (exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError)):
            return await on_unexpected(request, exc)
        # A lost or busy database connection (a restart, a dropped socket; the pool replaces it): the
        # transaction was rolled back, so the same request can simply be sent again.
        log.warning("database unavailable", error=repr(exc)[:300])
        return problem(
            503,
            "The database was briefly unreachable; nothing was changed. Send the same request again.",
            headers={"Retry-After": "1"},
        )

    async def on_unexpected(_request: Request, exc: Exception) -> Response:
        log.exception("unhandled error", error=repr(exc))
        return problem(500, "Something went wrong on our side; nothing was changed. Quote the request id.")

    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(DomainError, on_domain)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(DBAPIError, on_database)
    app.add_exception_handler(Exception, on_unexpected)


class RequestContextMiddleware:
    """Request id (from the gateway or new), correlation id, access metrics; pure ASGI for speed."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app, self.service = app, service
        # Metric children by (method, route, status): `labels()` costs more than the observation.
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = correlation_id = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                request_id = value.decode("latin-1")
            elif name == b"x-correlation-id":
                correlation_id = value.decode("latin-1")
        request_id = request_id or str(uuid.uuid4())
        correlation_id = correlation_id or request_id
        scope.setdefault("state", {})["correlation_id"] = correlation_id
        request_id_header = (b"x-request-id", request_id.encode("latin-1"))
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), request_id_header]
            await send(message)

        tokens = structlog.contextvars.bind_contextvars(request_id=request_id, correlation_id=correlation_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            structlog.contextvars.reset_contextvars(**tokens)
            route = getattr(scope.get("route"), "path", "unmatched")
            key = (scope["method"], route, status)
            children = self._children.get(key)
            if children is None:
                children = self._children[key] = (
                    metrics.HTTP_REQUESTS.labels(self.service, key[0], route, str(status)),
                    metrics.HTTP_DURATION.labels(self.service, key[0], route),
                )
            children[0].inc()
            children[1].observe(time.perf_counter() - started)


# A NUL character inside a JSON string (`\u0000` after an even number of backslashes), or a raw one.
_JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def _has_nul(data: bytes) -> bool:
    return b"\x00" in data or (b"u0000" in data and _JSON_NUL.search(data) is not None)


class NulGuardMiddleware:
    """Refuse NUL characters in paths, queries and JSON bodies (422) before they reach a database.

    PostgreSQL cannot store them in text ("invalid byte sequence"), SQLite would store them silently:
    either way no identifier or name in Tarjotin has a use for one. Other bodies (the CSV import) are
    the routes' own to check, with a message about the file.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        where = None
        if "\x00" in scope["path"] or b"%00" in scope.get("raw_path", b"") or b"%00" in scope["query_string"]:
            where = "the URL"
        if where is None and scope["method"] in ("POST", "PUT", "PATCH") and _is_json(scope):
            chunks = []
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    await self.app(scope, _replay([message]), send)
                    return
                chunks.append(message)
                if not message.get("more_body"):
                    break
            if _has_nul(b"".join(m.get("body", b"") for m in chunks)):
                where = "the request body"
            receive = _replay(chunks, receive)
        if where is not None:
            response = problem(422, f"{where[0].upper()}{where[1:]} contains a NUL character (\\u0000); remove it.")
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _is_json(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            return b"json" in value.lower()
    return True  # FastAPI reads a body without a content type as JSON


def _replay(messages: list[Message], then: Receive | None = None) -> Receive:
    pending = list(messages)

    async def receive() -> Message:
        if pending:
            return pending.pop(0)
        if then is None:
            return {"type": "http.disconnect"}
        return await then()

    return receive


def correlation_id(request: Request) -> str:
    return str(request.state.correlation_id)


T = TypeVar("T")


class ListOf(BaseModel, Generic[T]):
    """One page of a list."""

    total: int
    page: int
    page_size: int
    items: list[T]


class Page(BaseModel):
    """Pagination parameters shared by every list."""

    page: int = Field(1, ge=1, le=1_000_000)
    page_size: int = Field(50, ge=1, le=500)

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.page_size


async def page_params(
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1, page_size: Annotated[int, Query(ge=1, le=500)] = 50
) -> Page:
    """`Page` as query parameters. An async function, because FastAPI calls a class dependency (`Depends()`
    on `Page` itself) in a worker thread: that hop cost a cached search more CPU than answering it."""
    return Page.model_construct(page=page, page_size=page_size)


PageDep = Annotated[Page, Depends(page_params)]


async def broker_reachable(amqp_url: str, wait_s: float = 1.0) -> bool:
    parsed = urlparse(amqp_url)
    try:
        _reader, writer = await asyncio.wait_for(
            asyncio.open_connection(parsed.hostname or "127.0.0.1", parsed.port or 5672), wait_s
        )
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True


def ops_router(
    service: str,
    engine: AsyncEngine,
    amqp_url: str,
    extra_ready: Callable[[], Awaitable[Mapping[str, Any]]] | None = None,
) -> APIRouter:
    """`/health` (alive), `/ready` (database and broker), `/metrics`."""
    router = APIRouter(tags=["operations"])

    @router.get("/health", summary="Liveness")
    async def health() -> dict[str, str]:
        return {"status": "ok", "service": service}

    @router.get("/ready", summary="Readiness: database and broker reachable")
    async def ready() -> Response:
        try:
            await asyncio.wait_for(ping(engine), 2.0)
            database = "ok"
        except Exception as exc:
            database = f"unreachable: {type(exc).__name__}"
        broker = "ok" if await broker_reachable(amqp_url) else "unreachable"
        body: dict[str, Any] = {"service": service, "database": database, "broker": broker}
        if extra_ready and database == "ok":
            body.update(await extra_ready())
        if database != "ok":
            body["status"] = "unavailable"
            return JSONResponse(body, status_code=503)
        # Without the broker, requests are still accepted: events wait in the outbox.
        body["status"] = "ready" if broker == "ok" else "degraded"
        return JSONResponse(body)

    @router.get(
        "/metrics",
        summary="Prometheus metrics",
        response_class=Response,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    async def metrics_page() -> Response:
        payload, content_type = metrics.render()
        return Response(payload, media_type=content_type)

    return router


class Problem(BaseModel):
    """RFC 9457 problem details, as every error is answered."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    request_id: str | None = None


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries for problem+json answers (e.g. 401, 403, 404 of authorised routes)."""
    return {
        status: {"model": Problem, "description": TITLES.get(status, "Error"), "content": {PROBLEM: {}}}
        for status in statuses
    }


# What every route behind a token may answer besides its own outcomes.
AUTH_RESPONSES = problem_responses(401, 403)


def document_problems(app: FastAPI) -> None:
    """Make the OpenAPI say what the API does: validation errors are problem+json, not FastAPI's default."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components["Problem"] = {
            "title": "Problem",
            "type": "object",
            "description": "RFC 9457 problem details, as every error is answered.",
            "required": ["type", "title", "status", "detail"],
            "properties": {
                "type": {"type": "string"},
                "title": {"type": "string"},
                "status": {"type": "integer"},
                "detail": {"type": "string"},
                "request_id": {"type": "string"},
                "errors": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
                    },
                },
            },
        }
        problem_content = {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}
        for item in schema.get("paths", {}).values():
            for operation in item.values():
                if not isinstance(operation, dict):
                    continue
                for status, response in operation.get("responses", {}).items():
                    if str(status).startswith(("4", "5")):
                        response["content"] = problem_content
                if "422" not in operation.get("responses", {}) and (
                    operation.get("parameters") or operation.get("requestBody")
                ):
                    operation.setdefault("responses", {})["422"] = {
                        "description": "Invalid request",
                        "content": problem_content,
                    }
        for unused in ("HTTPValidationError", "ValidationError"):
            components.pop(unused, None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
