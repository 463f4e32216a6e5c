"""Enrolment settings (`TARJOTIN_ENROLMENT_*`)."""

from typing import ClassVar

from shared.settings import ServiceSettings, service_config


class Settings(ServiceSettings):
    service: ClassVar[str] = "enrolment"
    model_config = service_config("enrolment")
    http_port: int = 8102
