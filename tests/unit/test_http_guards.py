"""NUL characters never reach a database; the body still reaches the route untouched."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import structlog
from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import BaseModel
from sqlalchemy import exc as sa_exc

from shared import metrics
from shared.http import NulGuardMiddleware, RequestContextMiddleware, install_problem_handlers


class Body(BaseModel):
    name: str


def guarded_app() -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)

    @app.post("/echo")
    async def echo(body: Body) -> dict[str, str]:
        return {"name": body.name}

    @app.get("/items/{item_id}")
    async def item(item_id: str, q: str | None = None) -> dict[str, str | None]:
        return {"id": item_id, "q": q}

    app.add_middleware(NulGuardMiddleware)
    return app


@pytest.fixture
async def client() -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=guarded_app()), base_url="http://t")


@pytest.mark.parametrize(
    "raw",
    [b'{"name": "a\\u0000b"}', b'{"name": "a\\\\\\u0000b"}', b'{"name": "a\x00b"}'],
    ids=["escaped", "after-escaped-backslash", "raw"],
)
async def test_a_nul_in_the_body_is_refused(client: httpx.AsyncClient, raw: bytes) -> None:
    response = await client.post("/echo", content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"].startswith("The request body contains a NUL character")


async def test_a_literal_backslash_u0000_is_just_text(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/echo", content=b'{"name": "a\\\\u0000b"}', headers={"Content-Type": "application/json"}
    )
    assert (response.status_code, response.json()) == (200, {"name": "a\\u0000b"})


async def test_a_clean_body_passes_through_whole(client: httpx.AsyncClient) -> None:
    name = "Äiti " * 5000
    response = await client.post("/echo", json={"name": name})
    assert (response.status_code, response.json()) == (200, {"name": name})


@pytest.mark.parametrize("url", ["/items/a%00b", "/items/x?q=%00", "/items/x?q=ok%00"])
async def test_a_nul_in_the_url_is_refused(client: httpx.AsyncClient, url: str) -> None:
    response = await client.get(url)
    assert response.status_code == 422
    assert response.json()["detail"].startswith("The URL contains a NUL character")


async def test_a_clean_url_passes(client: httpx.AsyncClient) -> None:
    response = await client.get("/items/x", params={"q": "100%"})
    assert (response.status_code, response.json()) == (200, {"id": "x", "q": "100%"})


async def test_a_non_json_body_is_left_to_the_route(client: httpx.AsyncClient) -> None:
    """The CSV import reports a binary file as such; the guard only reads JSON."""
    response = await client.post("/echo", content=b"\x89PNG\r\n\x00\x00", headers={"Content-Type": "text/csv"})
    assert response.status_code == 422
    assert "NUL" not in response.json()["detail"]


def context_app() -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)

    @app.get("/things/{thing_id}")
    async def thing(thing_id: str) -> dict[str, str | None]:
        bound = structlog.contextvars.get_contextvars()
        return {"id": thing_id, "request_id": bound.get("request_id"), "correlation_id": bound.get("correlation_id")}

    app.add_middleware(RequestContextMiddleware, service="guards")
    return app


async def test_request_ids_are_bound_echoed_and_counted_per_route() -> None:
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=context_app()), base_url="http://t")
    counted = metrics.HTTP_REQUESTS.labels("guards", "GET", "/things/{thing_id}", "200")
    before = counted._value.get()
    given = await client.get("/things/a", headers={"X-Request-ID": "req-1", "X-Correlation-ID": "cor-1"})
    fresh = await client.get("/things/b")
    missing = await client.get("/nothing-here")
    assert given.headers["x-request-id"] == "req-1"
    assert given.json() == {"id": "a", "request_id": "req-1", "correlation_id": "cor-1"}
    assert fresh.headers["x-request-id"] == fresh.json()["request_id"] == fresh.json()["correlation_id"]
    assert missing.status_code == 404 and missing.headers["x-request-id"]
    assert counted._value.get() == before + 2
    assert metrics.HTTP_REQUESTS.labels("guards", "GET", "unmatched", "404")._value.get() >= 1
    assert structlog.contextvars.get_contextvars().get("request_id") is None, "the request's ids outlived it"


def database_app(error: Exception) -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)

    @app.get("/fails")
    async def fails() -> None:
        raise error

    return app


@pytest.mark.parametrize(
    "error",
    [
        sa_exc.OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly")),
        sa_exc.InterfaceError("SELECT 1", {}, Exception("connection is closed")),
        sa_exc.DBAPIError("SELECT 1", {}, Exception("lost"), connection_invalidated=True),
    ],
    ids=["operational", "interface", "invalidated"],
)
async def test_a_lost_database_connection_is_503_with_retry_after(error: Exception) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=database_app(error)), base_url="http://t") as c:
        answer = await c.get("/fails")
    assert answer.status_code == 503
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.headers["retry-after"] == "1"
    assert "nothing was changed" in answer.json()["detail"]


async def test_other_database_errors_stay_500() -> None:
    error = sa_exc.IntegrityError("INSERT", {}, Exception("duplicate key"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=database_app(error)), base_url="http://t") as c:
        answer = await c.get("/fails")
    assert answer.status_code == 500
    assert answer.headers["content-type"] == "application/problem+json"


def _api_routes(routes: Any) -> Iterator[APIRoute]:
    """Every APIRoute, also inside included routers (FastAPI keeps those as `original_router`)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif (inner := getattr(getattr(route, "original_router", route), "routes", None)) is not None:
            yield from _api_routes(inner)


def _dependencies(dependant: Any) -> Iterator[Any]:
    for sub in dependant.dependencies:
        yield sub
        yield from _dependencies(sub)


@pytest.mark.parametrize("service", ["catalogue", "enrolment", "billing", "reporting"])
def test_no_route_depends_on_a_plain_function(service: str) -> None:
    """FastAPI runs a plain (non-async) dependency in a worker thread and back: a round trip per request
    that waits for the GIL behind the loop's other work. A sync `get_cache` cost every cached report ~0.2 ms
    of CPU (729 → 501 µs in process; docs/performance.md, tenth round)."""
    app_module = importlib.import_module(f"services.{service}.app")
    settings_module = importlib.import_module(f"services.{service}.settings")
    app = app_module.build_api(settings_module.Settings(database_url="sqlite+aiosqlite:///unused.db"))
    checked, threaded = 0, []
    for route in _api_routes(app.routes):
        for dependency in _dependencies(route.dependant):
            call = dependency.call
            if call is None:
                continue
            checked += 1
            target = call if inspect.isroutine(call) or inspect.isclass(call) else type(call).__call__
            if inspect.isclass(call) or not inspect.iscoroutinefunction(target):
                threaded.append(f"{route.path}: {getattr(call, '__qualname__', call)!r}")
    assert checked > 0
    assert not threaded, threaded
