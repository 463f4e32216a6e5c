"""Where an event's time goes: per hop, from the services' own outbox and inbox rows.

Every outbox row keeps `created_at` (staged in the producer's transaction) and `published_at` (the broker's confirm of
its publish, which the relay writes with its next read); every inbox row
keeps `processed_at` (the consumer's transaction began). So for each event staged in a time window:

    marked   = published_at − created_at          (waiting in the outbox, publish, confirm)
    handled  = inbox.processed_at − created_at    (staged → the consuming service's batch begins), per consumer

A consumer often begins before the relay has marked the event (the message does not wait for the mark).

Rows are read after the run, so measuring costs the system nothing while it runs.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Protocol

from bench.drive import pct

PRODUCERS = ("catalogue", "enrolment", "billing")  # reporting publishes nothing: it has no outbox
CONSUMERS = ("catalogue", "enrolment", "billing", "reporting")


class Queryable(Protocol):
    async def query(self, service: str, sql: str) -> list[Any]: ...


async def hop_lags(system: Queryable, since: float, until: float) -> list[dict[str, Any]]:
    """p50/p95/p99 (ms) of each hop of every event staged in [since, until], per event and consumer."""
    staged: dict[str, tuple[str, str, float, float]] = {}  # event id → producer, routing key, created, published
    for service in PRODUCERS:
        rows = await system.query(
            service,
            "SELECT event_id, routing_key, created_at, published_at FROM outbox "
            f"WHERE created_at >= {since!r} AND created_at <= {until!r} AND published_at IS NOT NULL",
        )
        for event_id, routing_key, created, published in rows:
            staged[event_id] = (service, routing_key, float(created), float(published))
    marked: dict[tuple[str, str], list[float]] = defaultdict(list)
    for producer, routing_key, created, published in staged.values():
        marked[(producer, routing_key)].append((published - created) * 1000)
    handled: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for consumer in CONSUMERS:
        rows = await system.query(consumer, f"SELECT event_id, processed_at FROM inbox WHERE processed_at >= {since!r}")
        for event_id, processed in rows:
            found = staged.get(event_id)
            if found:
                producer, routing_key, created, _published = found
                handled[(producer, routing_key, consumer)].append((float(processed) - created) * 1000)
    hops = [
        {"hop": "marked", "producer": p, "event": k, "consumer": "", "n": len(v), **_spread(v)}
        for (p, k), v in sorted(marked.items())
    ]
    hops += [
        {"hop": "handled", "producer": p, "event": k, "consumer": c, "n": len(v), **_spread(v)}
        for (p, k, c), v in sorted(handled.items())
    ]
    return hops


def _spread(values: list[float]) -> dict[str, float]:
    return {"p50_ms": pct(values, 50), "p95_ms": pct(values, 95), "p99_ms": pct(values, 99)}


def hops_table(hops: list[dict[str, Any]]) -> str:
    lines = [f"  {'hop':8} {'producer':10} {'event':34} {'consumer':10} {'n':>6} {'p50':>7} {'p95':>7} {'p99':>7}"]
    for h in hops:
        lines.append(
            f"  {h['hop']:8} {h['producer']:10} {h['event']:34} {h['consumer']:10} {h['n']:>6} "
            f"{h['p50_ms']:>7} {h['p95_ms']:>7} {h['p99_ms']:>7}"
        )
    return "\n".join(lines)
