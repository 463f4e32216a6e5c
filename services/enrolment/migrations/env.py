"""Alembic environment of the enrolment service (see shared/migrate.py)."""

from services.enrolment.tables import metadata
from shared.migrate import run_env

run_env(metadata)
