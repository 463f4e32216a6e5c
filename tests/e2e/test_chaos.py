"""Kill things while enrolments are in flight; afterwards nothing is lost, nothing doubled, all agree."""

from __future__ import annotations

import asyncio
import os
import subprocess
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.support.infra import eventually
from tests.support.system import Network, System

pytestmark = pytest.mark.e2e


async def all_pages(client: httpx.AsyncClient, path: str, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    page = 1
    while True:
        response = await get_when_up(client, path, {**params, "page": page, "page_size": 500})
        body = response.json()
        items += body["items"]
        if len(items) >= body["total"]:
            return items
        page += 1


async def get_when_up(client: httpx.AsyncClient, path: str, params: dict[str, Any]) -> httpx.Response:
    """GET, waiting out a service that is still restarting (502/503/504 from the gateway)."""
    async with asyncio.timeout(60):
        while True:
            try:
                response = await client.get(path, params=params)
                if response.status_code not in (502, 503, 504):
                    assert response.status_code == 200, response.text
                    return response
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)


async def enrol_until_accepted(client: httpx.AsyncClient, payload: dict[str, Any], key: str) -> str:
    """A client that retries with the same Idempotency-Key until the system answers (as a browser would)."""
    async with asyncio.timeout(120):
        while True:
            try:
                response = await client.post("/api/enrolments", json=payload, headers={"Idempotency-Key": key})
                if response.status_code in (200, 201):
                    return str(response.json()["id"])
                assert response.status_code in (502, 503, 504), response.text
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)


async def reconcile(client: httpx.AsyncClient, offering_id: str, expected_ids: set[str], amount: Decimal) -> None:
    """Enrolment, billing and reporting agree exactly on the offering's enrolments."""

    async def settled() -> bool:
        enrolments = await all_pages(client, "/api/enrolments", offering_id=offering_id)
        return len(enrolments) == len(expected_ids) and all(e["status"] == "confirmed" for e in enrolments)

    await eventually(settled, timeout=120, interval=0.5)
    enrolments = await all_pages(client, "/api/enrolments", offering_id=offering_id)
    assert {e["id"] for e in enrolments} == expected_ids

    async def billed() -> list[dict[str, Any]] | None:
        commitments = [
            c for c in await all_pages(client, "/api/billing/commitments") if c["offering_id"] == offering_id
        ]
        return commitments if len(commitments) >= len(expected_ids) else None

    commitments = await eventually(billed, timeout=60, interval=0.5)
    assert sorted(c["enrolment_id"] for c in commitments) == sorted(expected_ids), "a commitment lost or doubled"
    assert all(c["status"] == "accepted" and Decimal(c["amount"]) == amount for c in commitments)

    async def reported() -> dict[str, Any] | None:
        response = await get_when_up(client, "/api/reports/participants", {"offering_id": offering_id})
        line = response.json()["items"][0] if response.json()["items"] else {}
        return line if line.get("confirmed") == len(expected_ids) else None

    line = await eventually(reported, timeout=60, interval=0.5)
    assert (line["held"], line["awaiting_commitment"], line["waitlisted"]) == (len(expected_ids), 0, 0)


async def billing_report_agrees(client: httpx.AsyncClient, provider: str, count: int, amount: Decimal) -> None:
    """The reporting service's euros equal billing's, to the cent."""

    async def agrees() -> dict[str, Any] | None:
        response = await get_when_up(client, "/api/reports/billing", {"institution": provider})
        items = response.json()["items"]
        side = items[0]["as_provider"] if items else {}
        return side if side.get("committed_count") == count else None

    side = await eventually(agrees, timeout=60, interval=0.5)
    assert Decimal(side["committed"]) == amount * count
    assert side["pending_count"] == 0 and side["voided_count"] == 0


CHAOS_N = int(os.environ.get("TARJOTIN_CHAOS_N", "200"))


async def test_sigkill_of_each_service_and_a_broker_restart_during_enrolments_lose_and_double_nothing(
    system: System,
) -> None:
    """The normal suite runs 200 enrolments; `make chaos` runs 10,000 (TARJOTIN_CHAOS_N)."""
    n = CHAOS_N
    async with system.client() as client:
        net = Network(client)
        provider, home = await net.institution("pkky", member=True), await net.institution("ysao", member=True)
        offerings = [await net.offering(provider, seats=10000, credits="1.5") for _ in range(-(-(n + 1) // 9000))]
        first = (await net.enrol(offerings[0], home, "warm-up")).json()["id"]
        gate = asyncio.Semaphore(16)

        async def one(i: int) -> str:
            payload = {
                "offering_id": offerings[i % len(offerings)],
                "home_institution_id": home,
                "student": {"learner_id": f"s{i}", "name": f"Oppilas {i}", "email": f"s{i}@example.fi"},
            }
            async with gate:
                return await enrol_until_accepted(client, payload, key=f"chaos-{net.tag}-{i}")

        async def chaos() -> None:
            victims = [
                ("enrolment", "api"),
                ("billing", "worker"),
                ("enrolment", "worker"),
                ("rabbitmq", ""),
                ("reporting", "worker"),
                ("billing", "api"),
                ("catalogue", "worker"),
                ("reporting", "api"),
            ]
            if system.readers:  # and the read-only reporting API beside it (decision 004)
                victims.append(("reporting", "reader1"))
            pause = max(0.4, n / 2000)  # spread the kills over the burst
            for service, role in victims:
                await asyncio.sleep(pause)
                if service == "rabbitmq":
                    await asyncio.to_thread(rabbitmq, "stop_app")
                    await asyncio.sleep(1.0)
                    await asyncio.to_thread(rabbitmq, "start_app")
                    continue
                await asyncio.to_thread(system.kill, service, role)
                await asyncio.sleep(0.3)
                await asyncio.to_thread(system.start, service, role)

        ids, _ = await asyncio.gather(asyncio.gather(*(one(i) for i in range(n))), chaos())
        await system.wait_ready()
        assert len(set(ids)) == n, "an accepted request did not get exactly one enrolment"
        expected = {*ids, first}
        for offering in offerings:
            mine = {e for i, e in enumerate(ids) if offerings[i % len(offerings)] == offering}
            await reconcile(
                client, offering, mine | ({first} if offering == offerings[0] else set()), amount=Decimal("60.00")
            )
        await billing_report_agrees(client, provider, len(expected), Decimal("60.00"))


def rabbitmq(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=120)


async def test_requests_are_accepted_while_rabbitmq_is_down_and_the_outbox_catches_up(system: System) -> None:
    await system.wait_ready()
    async with system.client() as client:
        net = Network(client)
        provider, home = await net.institution("esedu", member=True), await net.institution("kao", member=True)
        offering = await net.offering(provider, seats=100, credits="1.0")
        first = (await net.enrol(offering, home, "before-outage")).json()["id"]
        await asyncio.to_thread(rabbitmq, "stop_app")
        try:
            during = []
            for i in range(20):
                response = await net.enrol(offering, home, f"outage-{i}")
                assert response.status_code == 201
                during.append(response.json()["id"])
            ready = (await client.get("/api/enrolments/ready")).json()
            assert ready["status"] == "degraded" and ready["broker"] == "unreachable"
            assert ready["outbox_backlog"] >= 20

            async def backlog_in_metrics() -> bool:
                page = (await client.get("/api/enrolments/metrics")).text
                return metric(page, 'outbox_backlog{service="enrolment"}') >= 20

            await eventually(backlog_in_metrics, timeout=20, interval=0.5)
            await asyncio.sleep(2)  # the outage lasts long enough to show up as lag
        finally:
            await asyncio.to_thread(rabbitmq, "start_app")
            await asyncio.to_thread(rabbitmq, "await_startup")
        await reconcile(client, offering, {first, *during}, amount=Decimal("40.00"))

        async def caught_up() -> bool:  # the relay marks its last batch sent a moment after its confirm
            ready = (await client.get("/api/enrolments/ready")).json()
            return bool(ready["status"] == "ready" and ready["outbox_backlog"] == 0)

        await eventually(caught_up, timeout=5, interval=0.1)
        billing = (await client.get("/api/billing/metrics")).text
        lag = 'event_lag_seconds_bucket{le="%s",service="billing",type="enrolment.requested"}'
        assert metric(billing, lag % "1.0") < metric(billing, lag % "+Inf"), "the outage's lag is not in the metrics"


def metric(page: str, name: str) -> float:
    """The value of one sample on a Prometheus text page (0 when absent)."""
    for line in page.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0
