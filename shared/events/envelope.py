"""The CloudEvents 1.0 envelope (structured JSON mode) and the base of every event payload."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any, ClassVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

TYPE_PREFIX = "fi.tarjotin."
CENT = Decimal("0.01")


def to_money(value: Decimal | int | str) -> Decimal:
    """Round to cents, half up, as the network's rules say."""
    return Decimal(value).quantize(CENT, rounding=ROUND_HALF_UP)


Money = Annotated[
    Decimal,
    Field(max_digits=12, decimal_places=2, ge=0),
    PlainSerializer(lambda d: f"{to_money(d)}", return_type=str, when_used="always"),
]
"""Euros with cents: a decimal string such as "120.00" on the wire."""


class EventData(BaseModel):
    """Base of every event payload: frozen, unknown fields kept out, versioned by class vars."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    name: ClassVar[str]
    version: ClassVar[int] = 1

    @classmethod
    def type_name(cls) -> str:
        return f"{TYPE_PREFIX}{cls.name}.v{cls.version}"


def utcnow() -> datetime:
    return datetime.now(UTC)


class Envelope(BaseModel):
    """A CloudEvent plus `correlationid` and `sequence` (the aggregate's version)."""

    model_config = ConfigDict(frozen=True)

    specversion: str = "1.0"
    id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    source: str
    type: str
    subject: str
    time: datetime = Field(default_factory=utcnow)
    datacontenttype: str = "application/json"
    correlationid: str
    sequence: int = Field(ge=1)
    data: dict[str, Any]

    @property
    def routing_key(self) -> str:
        """`fi.tarjotin.enrolment.confirmed.v1` → `enrolment.confirmed`."""
        return routing_key_of(self.type)

    def to_json(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json"))

    @classmethod
    def from_json(cls, body: bytes | str) -> Envelope:
        return cls.model_validate_json(body)


def routing_key_of(event_type: str) -> str:
    if not event_type.startswith(TYPE_PREFIX):
        raise ValueError(f"event type {event_type!r} does not start with {TYPE_PREFIX!r}")
    name, _, version = event_type[len(TYPE_PREFIX) :].rpartition(".")
    if not name or not version.startswith("v"):
        raise ValueError(f"event type {event_type!r} lacks a .vN suffix")
    return name


def new_event(data: EventData, *, source: str, subject: str, sequence: int, correlation_id: str) -> Envelope:
    """Wrap a payload in its envelope."""
    return Envelope(
        source=source,
        type=data.type_name(),
        subject=subject,
        sequence=sequence,
        correlationid=correlation_id,
        data=data.model_dump(mode="json"),
    )
