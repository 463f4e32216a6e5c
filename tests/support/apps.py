"""A service's API in process: the app its `build_api` makes, on a test's engine, called through ASGI."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.auth import ADMIN

# The app's own engine is never used: `app.state.engine` is swapped for the test's before any request.
UNUSED_URL = "sqlite+aiosqlite:///unused.db"


def app_on(build_api: Callable[[Any], FastAPI], settings: Callable[..., Any], engine: AsyncEngine) -> FastAPI:
    """The service's app (middlewares, problem handlers, auth, caches of its own) serving `engine`'s database:
    each call is one more API process."""
    app = build_api(settings(database_url=UNUSED_URL))
    app.state.engine = engine
    return app


def client_of(app: FastAPI, prefix: str, headers: Mapping[str, str] = ADMIN) -> httpx.AsyncClient:
    """A client of `app` under its public `prefix` (`/api/...`); the network admin's unless other `headers`
    are given (`{}`: anonymous)."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://test{prefix}", headers=headers)
