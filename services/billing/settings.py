"""Billing settings (`TARJOTIN_BILLING_*`)."""

from typing import ClassVar

from pydantic import Field

from shared.settings import ServiceSettings, service_config


class Settings(ServiceSettings):
    service: ClassVar[str] = "billing"
    model_config = service_config("billing")
    http_port: int = 8103
    charge_due_interval_s: float = Field(
        default=60.0, gt=0, le=3600, description="how often the worker makes commitments past their deadline chargeable"
    )
