"""Each service's schema comes from its migrations, which match its tables and can be undone."""

from __future__ import annotations

import asyncio
import importlib
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

from shared.migrate import alembic_config
from tests.support.infra import ROOT, SERVICES, database, migrate

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("service", SERVICES)
async def test_migrations_build_exactly_the_declared_tables_and_downgrade_cleanly(
    service: str, db_kind: str, tmp_path: Path
) -> None:
    metadata: sa.MetaData = importlib.import_module(f"services.{service}.tables").metadata
    async with database(db_kind, tmp_path, f"mig_{service}") as url:
        await migrate(service, url)
        engine = create_async_engine(url)
        async with engine.connect() as conn:
            diff = await conn.run_sync(lambda sync: compare_metadata(MigrationContext.configure(sync), metadata))
            tables = await conn.run_sync(lambda sync: set(sa.inspect(sync).get_table_names()))
        assert diff == [], f"tables.py and migrations of {service} differ: {diff}"
        assert set(metadata.tables) <= tables

        config = alembic_config(ROOT / "services" / service / "migrations", url)
        await asyncio.to_thread(command.downgrade, config, "base")
        async with engine.connect() as conn:
            left = await conn.run_sync(lambda sync: set(sa.inspect(sync).get_table_names()))
        await engine.dispose()
        assert left <= {"alembic_version"}
