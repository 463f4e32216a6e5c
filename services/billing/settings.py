"""Billing settings (`TARJOTIN_BILLING_*`)."""

from typing import ClassVar

from shared.settings import ServiceSettings, service_config


class Settings(ServiceSettings):
    service: ClassVar[str] = "billing"
    model_config = service_config("billing")
    http_port: int = 8103
