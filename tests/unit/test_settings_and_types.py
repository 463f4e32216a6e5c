"""Settings refuse unsafe values; money and timestamps keep their exactness in the database types."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from pydantic import ValidationError
from sqlalchemy.dialects import sqlite

from services.enrolment.settings import Settings
from shared.db import Cents, UTCDateTime
from shared.events import Envelope, routing_key_of


def test_database_defaults_to_a_sqlite_file_per_service(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TARJOTIN_ENROLMENT_DATABASE_URL", raising=False)
    monkeypatch.setenv("TARJOTIN_DATA_DIR", "/tmp/somewhere")
    assert Settings().database_url == "sqlite+aiosqlite:////tmp/somewhere/enrolment.db"


def test_unsupported_database_url_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TARJOTIN_ENROLMENT_DATABASE_URL", "mysql://root@localhost/x")
    with pytest.raises(ValidationError, match="database_url must start with"):
        Settings()


def test_retry_delays_come_from_a_list_and_must_be_positive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TARJOTIN_RETRY_DELAYS_MS", "100, 200 300")
    assert Settings().retry_delays_ms == (100, 200, 300)
    monkeypatch.setenv("TARJOTIN_RETRY_DELAYS_MS", "100,0")
    with pytest.raises(ValidationError, match="positive"):
        Settings()


def test_cents_store_integers_and_refuse_fractions_of_a_cent() -> None:
    cents, dialect = Cents(), sqlite.dialect()
    assert cents.process_bind_param(Decimal("120.50"), dialect) == 12050
    assert cents.process_result_value(12050, dialect) == Decimal("120.50")
    with pytest.raises(ValueError, match="fractions of a cent"):
        cents.process_bind_param(Decimal("0.001"), dialect)


def test_timestamps_come_back_in_utc_and_naive_ones_are_refused() -> None:
    column, dialect = UTCDateTime(), sqlite.dialect()
    assert column.process_result_value(datetime(2026, 1, 1, 12), dialect) == datetime(2026, 1, 1, 12, tzinfo=UTC)
    with pytest.raises(ValueError, match="naive"):
        column.process_bind_param(datetime(2026, 1, 1), dialect)


def test_routing_key_is_the_type_without_prefix_and_version() -> None:
    assert routing_key_of("fi.tarjotin.enrolment.confirmed.v1") == "enrolment.confirmed"
    with pytest.raises(ValueError):
        routing_key_of("com.example.thing.v1")


def test_envelope_round_trips_through_json() -> None:
    event = Envelope(source="t", type="fi.tarjotin.x.y.v1", subject="s", correlationid="c", sequence=2, data={"a": 1})
    assert Envelope.from_json(event.to_json()) == event
