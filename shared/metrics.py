"""Prometheus metrics every service exposes. Labels carry the service, so one dashboard fits all.

When `PROMETHEUS_MULTIPROC_DIR` is set (local runs: the API and worker of a service are two
processes) `/metrics` of the API aggregates both.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

HTTP_REQUESTS = Counter("http_requests_total", "HTTP requests", ["service", "method", "route", "status"])
HTTP_DURATION = Histogram(
    "http_request_duration_seconds",
    "HTTP request duration",
    ["service", "method", "route"],
    buckets=LATENCY_BUCKETS,
)
EVENTS_PUBLISHED = Counter("events_published_total", "Events confirmed by the broker", ["service", "type"])
EVENTS_CONSUMED = Counter("events_consumed_total", "Events handled and acked", ["service", "type", "outcome"])
EVENTS_FAILED = Counter("events_failed_total", "Event handler failures", ["service", "type", "destination"])
HANDLER_DURATION = Histogram(
    "event_handler_duration_seconds", "Time to handle one event batch", ["service"], buckets=LATENCY_BUCKETS
)
EVENT_LAG = Histogram(
    "event_lag_seconds",
    "Event time to handled by this consumer (end-to-end lag)",
    ["service", "type"],
    buckets=LATENCY_BUCKETS,
)
OUTBOX_BACKLOG = Gauge("outbox_backlog", "Unpublished outbox events", ["service"], multiprocess_mode="livemax")
OUTBOX_OLDEST_AGE = Gauge(
    "outbox_oldest_age_seconds",
    "Age of the oldest unpublished event",
    ["service"],
    multiprocess_mode="livemax",
)
RELAY_ERRORS = Counter("relay_errors_total", "Relay failures (then reconnect)", ["service", "error"])
DEAD_LETTERS = Counter("dead_letters_total", "Events sent to the dead-letter queue", ["service", "type"])
BUSINESS = Counter("business_events_total", "Domain outcomes (enrolments by status, ...)", ["service", "what"])
EUROS = Counter("euros_total", "Money committed, in euros", ["service", "what"])


def render() -> tuple[bytes, str]:
    """The metrics page: aggregated over processes when running multi-process."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
