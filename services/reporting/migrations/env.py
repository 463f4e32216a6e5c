"""Alembic environment of the reporting service (see shared/migrate.py)."""

from services.reporting.tables import metadata
from shared.migrate import run_env

run_env(metadata)
