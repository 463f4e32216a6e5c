"""Settings every service shares; each service subclasses with its own env prefix."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar, Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

SUPPORTED_DB_SCHEMES = ("sqlite+aiosqlite://", "postgresql+asyncpg://")
# Must match shared.auth.DEV_ISSUER (kept literal here so settings import nothing heavy).
DEV_ISSUER = "tarjotin-dev-issuer"
DEV_JWKS_URL = "http://127.0.0.1:8105/.well-known/jwks.json"


class ServiceSettings(BaseSettings):
    """Network-wide settings read from `TARJOTIN_*`, service ones from `TARJOTIN_<SERVICE>_*`."""

    service: ClassVar[str] = "service"
    model_config = SettingsConfigDict(extra="ignore")

    database_url: str = ""
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8100, ge=1, le=65535)
    worker_metrics_port: int = Field(default=0, ge=0, le=65535)
    # How long an idle HTTP connection is kept open. Longer than the gateway's keepalive_timeout for its
    # upstreams (60 s, deploy/nginx): the gateway, not the service, closes an idle connection, so a request
    # never goes out on a connection the service is closing at that moment (a POST would get 502).
    http_keepalive_s: int = Field(default=75, ge=1, le=3600, validation_alias="TARJOTIN_HTTP_KEEPALIVE_S")

    amqp_url: str = Field(
        default="amqp://guest:guest@127.0.0.1:5672/",
        validation_alias=AliasChoices("TARJOTIN_AMQP_URL", "AMQP_URL"),
    )
    exchange: str = Field(default="tarjotin.events", validation_alias="TARJOTIN_EXCHANGE")
    queue_prefix: str = Field(default="tarjotin", validation_alias="TARJOTIN_QUEUE_PREFIX")
    data_dir: Path = Field(default=Path("var/data"), validation_alias="TARJOTIN_DATA_DIR")
    log_level: str = Field(default="INFO", validation_alias="TARJOTIN_LOG_LEVEL")
    log_json: bool = Field(default=True, validation_alias="TARJOTIN_LOG_JSON")

    relay_poll_s: float = Field(default=0.02, gt=0, le=5, validation_alias="TARJOTIN_RELAY_POLL_S")
    relay_batch: int = Field(default=500, ge=1, le=5000, validation_alias="TARJOTIN_RELAY_BATCH")
    prefetch: int = Field(default=100, ge=1, le=5000, validation_alias="TARJOTIN_PREFETCH")
    consumer_batch: int = Field(default=50, ge=1, le=1000, validation_alias="TARJOTIN_CONSUMER_BATCH")
    # After the first message of a batch, wait this long for more before handling it (0: never wait).
    consumer_linger_ms: float = Field(default=0, ge=0, le=1000, validation_alias="TARJOTIN_CONSUMER_LINGER_MS")
    retry_delays_ms: Annotated[tuple[int, ...], NoDecode] = Field(
        default=(1000, 10000, 60000), validation_alias="TARJOTIN_RETRY_DELAYS_MS"
    )
    max_attempts: int = Field(default=5, ge=1, le=50, validation_alias="TARJOTIN_MAX_ATTEMPTS")
    # Published outbox rows are deleted by the worker's hourly housekeeping once this old (0: at the next round).
    outbox_keep_days: float = Field(default=7, ge=0, le=3650, validation_alias="TARJOTIN_OUTBOX_KEEP_DAYS")

    # development: the local token issuer (`python -m shared.devissuer`) is trusted by default.
    # production: an issuer and a key source must be configured, and the development ones are refused.
    environment: Literal["development", "production"] = Field(default="development", validation_alias="TARJOTIN_ENV")
    auth_issuer: str = Field(default="", validation_alias="TARJOTIN_AUTH_ISSUER")
    auth_audience: str = Field(default="tarjotin", min_length=1, validation_alias="TARJOTIN_AUTH_AUDIENCE")
    auth_jwks_url: str = Field(default="", validation_alias="TARJOTIN_AUTH_JWKS_URL")
    auth_public_key_file: Path | None = Field(default=None, validation_alias="TARJOTIN_AUTH_PUBLIC_KEY_FILE")
    auth_leeway_s: int = Field(default=30, ge=0, le=300, validation_alias="TARJOTIN_AUTH_LEEWAY_S")

    @field_validator("retry_delays_ms", mode="before")
    @classmethod
    def _split_delays(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(int(part) for part in value.replace(",", " ").split())
        return value

    @field_validator("retry_delays_ms")
    @classmethod
    def _positive_delays(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(delay <= 0 for delay in value):
            raise ValueError("retry delays must be one or more positive millisecond values")
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("log level must be DEBUG, INFO, WARNING or ERROR")
        return level

    @model_validator(mode="after")
    def _default_database(self) -> ServiceSettings:
        if not self.database_url:
            self.database_url = f"sqlite+aiosqlite:///{self.data_dir / self.service}.db"
        if not self.database_url.startswith(SUPPORTED_DB_SCHEMES):
            raise ValueError(
                f"database_url must start with one of {', '.join(SUPPORTED_DB_SCHEMES)}; "
                f"got {self.database_url.split(':', 1)[0]!r}"
            )
        if not self.amqp_url.startswith(("amqp://", "amqps://")):
            raise ValueError("amqp_url must be an amqp:// or amqps:// URL")
        self._check_auth()
        return self

    def _check_auth(self) -> None:
        if self.auth_jwks_url and not self.auth_jwks_url.startswith(("https://", "http://")):
            raise ValueError("TARJOTIN_AUTH_JWKS_URL must be an http(s) URL")
        if self.auth_public_key_file is not None and not self.auth_public_key_file.is_file():
            raise ValueError(f"TARJOTIN_AUTH_PUBLIC_KEY_FILE {self.auth_public_key_file} is not a readable file")
        if self.environment == "production":
            if not self.auth_issuer or self.auth_issuer == DEV_ISSUER:
                raise ValueError("production needs TARJOTIN_AUTH_ISSUER set to the network's identity provider")
            if not (self.auth_jwks_url or self.auth_public_key_file):
                raise ValueError("production needs TARJOTIN_AUTH_JWKS_URL or TARJOTIN_AUTH_PUBLIC_KEY_FILE")
            if self.auth_jwks_url == DEV_JWKS_URL or "dev-issuer" in str(self.auth_public_key_file or ""):
                raise ValueError("production may not trust the development token issuer's keys")
            if self.auth_jwks_url.startswith("http://"):
                raise ValueError("production fetches signing keys over https only")
            return
        if not self.auth_issuer:
            self.auth_issuer = DEV_ISSUER
        if not (self.auth_jwks_url or self.auth_public_key_file):
            self.auth_jwks_url = DEV_JWKS_URL

    @property
    def queue(self) -> str:
        """The durable quorum queue this service consumes from."""
        return f"{self.queue_prefix}.{self.service}"


def service_config(service: str) -> SettingsConfigDict:
    """Model config for a service's settings: `TARJOTIN_<SERVICE>_` prefix."""
    return SettingsConfigDict(env_prefix=f"TARJOTIN_{service.upper()}_", extra="ignore")
