"""Alembic environment of the billing service (see shared/migrate.py)."""

from services.billing.tables import metadata
from shared.migrate import run_env

run_env(metadata)
