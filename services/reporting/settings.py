"""Reporting settings (`TARJOTIN_REPORTING_*`)."""

from typing import ClassVar

from pydantic import Field

from shared.settings import ServiceSettings, service_config


class Settings(ServiceSettings):
    service: ClassVar[str] = "reporting"
    model_config = service_config("reporting")
    http_port: int = 8104
    # Reporting is at the end of every chain (no one waits on it): let batches fill for a moment. Four events
    # per enrolment arrive from two producers; at 100/s 25 ms halves its transactions and takes its CPU per
    # enrolment down ~30-40 % against 5 ms (decision 009).
    consumer_linger_ms: float = Field(default=25, ge=0, le=1000, validation_alias="TARJOTIN_CONSUMER_LINGER_MS")
    # An API-only process that never writes (`python -m services.reporting api`): on SQLite its transactions
    # begin deferred and so run beside the writer process; writes are refused (shared.db.make_engine).
    database_read_only: bool = False
