"""Fixtures shared by every test level."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support import auth
from tests.support.infra import DB_KINDS, BusNamespace

auth.install_env()


@pytest.fixture(params=DB_KINDS)
def db_kind(request: pytest.FixtureRequest) -> str:
    """Run the test once per database kind (SQLite and PostgreSQL by default)."""
    return str(request.param)


@pytest.fixture
async def bus() -> AsyncIterator[BusNamespace]:
    namespace = BusNamespace()
    yield namespace
    await namespace.delete()


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    return tmp_path
