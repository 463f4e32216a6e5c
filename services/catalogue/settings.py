"""Catalogue settings (`TARJOTIN_CATALOGUE_*`)."""

from typing import ClassVar

from shared.settings import ServiceSettings, service_config


class Settings(ServiceSettings):
    service: ClassVar[str] = "catalogue"
    model_config = service_config("catalogue")
    http_port: int = 8101
