"""Alembic environment of the catalogue service (see shared/migrate.py)."""

from services.catalogue.tables import metadata
from shared.migrate import run_env

run_env(metadata)
