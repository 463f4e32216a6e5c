"""Reporting settings (`TARJOTIN_REPORTING_*`)."""

from typing import ClassVar

from shared.settings import ServiceSettings, service_config


class Settings(ServiceSettings):
    service: ClassVar[str] = "reporting"
    model_config = service_config("reporting")
    http_port: int = 8104
