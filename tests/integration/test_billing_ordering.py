"""Property: billing ends in the same state whatever the order and duplication of the events it consumes.

Hypothesis draws a small network's life (which home institution pays for each enrolment, and what then
happens to it: nothing, a free or a late withdrawal, a cancellation, a result); the events billing
listens to (institution registrations and updates, enrolment requests, withdrawals, cancellations,
results) are then delivered in order and once, and again shuffled with some delivered twice, each in
its own transaction through the consumer's inbox; a request that arrives before its payer's
registration fails and is delivered again later, as the bus's retry queue does. The commitments, the
events billing staged and the institutions it keeps must come out the same. (Mutation check: with the
parked withdrawals not applied when their commitment opens, hypothesis finds a failing order.)
"""

from __future__ import annotations

import asyncio
import random
import tempfile
from collections import deque
from datetime import date
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.billing.consumers import SUBSCRIPTIONS
from services.billing.tables import commitments, inbox, institutions, outbox, parked_events
from shared.bus import Consumer
from shared.db import forget_engines, make_engine
from shared.events import Envelope, InstitutionRegistered, InstitutionUpdated, LocalizedText, new_event
from tests.integration.test_billing_support import World
from tests.support.infra import database, examples, migrate

pytestmark = pytest.mark.integration
DEADLINE = date(2026, 9, 14)
FATES = ("none", "free_withdrawal", "late_withdrawal", "cancelled", "passed", "failed")
# the home institutions that pay: two members (automatic acceptance) and an outside one (manual, external price)
PAYERS = ("kao", "ekami", "edupoli")
COMPARED = (
    commitments.c.enrolment_id,
    commitments.c.payer_id,
    commitments.c.amount,
    commitments.c.price_kind,
    commitments.c.status,
    commitments.c.decided_by,
    commitments.c.reason,
    commitments.c.charge_percent,
    commitments.c.chargeable_amount,
    commitments.c.chargeable_on,
    commitments.c.voided_on,
    commitments.c.version,
)


def institution_events() -> list[Envelope]:
    def registered(slug: str, member: bool) -> Envelope:
        data = InstitutionRegistered(
            institution_id=slug, names=LocalizedText(fi=slug.upper()), kind="vocational", member=member
        )
        return new_event(data, source="catalogue", subject=slug, sequence=1, correlation_id="s")

    renamed = InstitutionUpdated(
        institution_id="kao", names=LocalizedText(fi="Kainuun ammattiopisto"), kind="vocational", member=True
    )
    return [
        registered("sakky", True),
        *(registered(slug, slug != "edupoli") for slug in PAYERS),
        new_event(renamed, source="catalogue", subject="kao", sequence=2, correlation_id="s"),
    ]


def life(world: World, payer: str, fate: str) -> list[Envelope]:
    """An enrolment's events as the enrolment service publishes them (sequence 1, 2, …)."""
    requested = world.requested("sakky", payer, deadline=DEADLINE, when=date(2026, 8, 20))
    enrolment_id = requested.subject
    if fate == "free_withdrawal":
        return [requested, world.withdrawn(enrolment_id, "0", when=date(2026, 9, 2))]
    if fate == "late_withdrawal":
        return [requested, world.withdrawn(enrolment_id, "50", when=date(2026, 9, 20))]
    if fate == "cancelled":
        return [requested, world.cancelled(enrolment_id, when=date(2026, 8, 30))]
    if fate in ("passed", "failed"):
        percent = "100" if fate == "passed" else "50"
        return [requested, world.completed(enrolment_id, fate, percent, when=date(2026, 12, 1))]
    return [requested]


async def final_state(url: str, delivered: list[Envelope]) -> dict[str, Any]:
    engine = make_engine(url)
    try:
        unused = "unused"  # no broker: events are handed to the consumer's `apply`
        consumer = Consumer(
            engine, inbox, SUBSCRIPTIONS, service="billing", amqp_url=f"amqp://{unused}/", exchange=unused, queue=unused
        )
        # One delivery per transaction, as separate messages would be. A request whose payer billing does
        # not know yet fails and comes back later, as the bus's retry queue would bring it.
        queue, retries = deque(delivered), 0
        while queue:
            event = queue.popleft()
            [failure] = await consumer.apply([event])
            if failure is not None:
                assert "not yet known to billing" in str(failure), failure
                queue.append(event)
                retries += 1
                assert retries <= len(delivered) ** 2
        async with engine.connect() as conn:
            rows = (await conn.execute(sa.select(*COMPARED).order_by(commitments.c.enrolment_id))).all()
            ids = dict((await conn.execute(sa.select(commitments.c.id, commitments.c.enrolment_id))).all())
            staged = []
            for payload in (await conn.execute(sa.select(outbox.c.payload))).scalars():
                event = orjson.loads(payload)
                staged.append((ids[event["subject"]], event["type"], event["sequence"]))
            kept = (await conn.execute(sa.select(institutions).order_by(institutions.c.id))).all()
            parked = (await conn.execute(sa.select(sa.func.count()).select_from(parked_events))).scalar_one()
    finally:
        await engine.dispose()
        forget_engines()
    return {
        "commitments": [tuple(row) for row in rows],
        "staged": sorted(staged),
        "institutions": [tuple(row) for row in kept],
        "parked": parked,
    }


def run_case(kind: str, delivered: list[Envelope]) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        with tempfile.TemporaryDirectory() as tmp:
            async with database(kind, Path(tmp), "billing_ordering") as url:
                await migrate("billing", url)
                return await final_state(url, delivered)

    return asyncio.run(go())


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_consumed_events_in_any_order_and_any_number_of_times_give_the_in_order_state(kind: str) -> None:
    count = examples(10 if kind == "sqlite" else 4)

    @settings(max_examples=count, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        lives=st.lists(st.tuples(st.sampled_from(PAYERS), st.sampled_from(FATES)), min_size=2, max_size=5),
        seed=st.integers(0, 10**6),
    )
    def check(lives: list[tuple[str, str]], seed: int) -> None:
        world = World(engine=None)  # type: ignore[arg-type]  # only builds events here
        events = institution_events() + [event for payer, fate in lives for event in life(world, payer, fate)]
        rng = random.Random(seed)
        shuffled = rng.sample(events, len(events))
        again = [rng.choice(events) for _ in range(rng.randrange(1, 4))]
        expected = run_case(kind, events)
        assert run_case(kind, shuffled + again) == expected
        # the in-order state itself is the one the rules give: every enrolment has its commitment, nothing
        # is left parked, members pay the member price and are accepted at once, the outside one waits
        assert expected["parked"] == 0 and len(expected["commitments"]) == len(lives)
        by_enrolment = {row[0]: row for row in expected["commitments"]}
        requests = [event for event in events if event.routing_key == "enrolment.requested"]
        for (payer, fate), requested in zip(lives, requests, strict=True):
            row = by_enrolment[requested.subject]
            assert (row[1], row[3]) == (payer, "member" if payer != "edupoli" else "external")
            if fate == "none":
                assert row[4] == ("accepted" if payer != "edupoli" else "pending")

    check()
