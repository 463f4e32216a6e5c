"""End to end through the gateway: an enrolment becomes a commitment, a confirmation and a report line."""

from __future__ import annotations

import asyncio
import json
import os
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.auth import ADMIN
from tests.support.system import Network, System, eventually

pytestmark = pytest.mark.e2e


async def get_json(client: httpx.AsyncClient, path: str, **params: Any) -> Any:
    response = await client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def status_of(client: httpx.AsyncClient, enrolment_id: str) -> str:
    return str((await get_json(client, f"/api/enrolments/{enrolment_id}"))["status"])


async def commitment_for(client: httpx.AsyncClient, enrolment_id: str) -> dict[str, Any] | None:
    items = (await get_json(client, "/api/billing/commitments", enrolment_id=enrolment_id))["items"]
    return items[0] if items else None


async def participants(client: httpx.AsyncClient, offering_id: str) -> dict[str, Any]:
    items = (await get_json(client, "/api/reports/participants", offering_id=offering_id))["items"]
    return items[0] if items else {}


async def test_one_enrolment_becomes_a_commitment_a_confirmation_and_a_report_line(system: System) -> None:
    async with system.client() as client:
        net = Network(client)
        sakky, kao = await net.institution("sakky", member=True), await net.institution("kao", member=True)
        offering = await net.offering(sakky, seats=10, credits="3.0")
        response = await net.enrol(offering, kao, "kao-1", key="e2e-1")
        assert response.status_code == 201, response.text
        enrolment = response.json()
        assert enrolment["status"] == "awaiting_commitment"

        async def confirmed() -> bool:
            return await status_of(client, enrolment["id"]) == "confirmed"

        await eventually(confirmed, timeout=15)
        commitment = await commitment_for(client, enrolment["id"])
        assert commitment is not None
        assert (commitment["payer_id"], commitment["payee_id"]) == (kao, sakky)
        assert commitment["status"] == "accepted" and commitment["price_kind"] == "member"
        assert Decimal(commitment["amount"]) == Decimal("120.00")  # 3 credits × 40.00 guideline default

        async def counted() -> dict[str, Any] | None:
            line = await participants(client, offering)
            return line if line.get("confirmed") == 1 else None

        line = await eventually(counted, timeout=15)
        assert line["held"] == 1 and line["by_home_institution"][kao]["confirmed"] == 1


async def test_an_outside_institution_pays_the_external_price_after_manual_approval(system: System) -> None:
    async with system.client() as client:
        net = Network(client)
        sakky, edupoli = await net.institution("sakky", member=True), await net.institution("edupoli", member=False)
        offering = await net.offering(sakky, seats=10, credits="2.0")
        enrolment = (await net.enrol(offering, edupoli, "ext-1")).json()
        commitment = await eventually(lambda: commitment_for(client, enrolment["id"]), timeout=15)
        assert commitment["status"] == "pending" and commitment["price_kind"] == "external"
        assert commitment["amount"] == "100.00"  # 2 × 40.00 = 80.00, plus the 25 % external surcharge
        assert await status_of(client, enrolment["id"]) == "awaiting_commitment"

        accepted = await client.post(f"/api/billing/commitments/{commitment['id']}/accept", json={"decided_by": "t"})
        assert accepted.status_code == 200, accepted.text

        async def confirmed() -> bool:
            return await status_of(client, enrolment["id"]) == "confirmed"

        await eventually(confirmed, timeout=15)


async def test_a_rejected_commitment_releases_the_seat_to_the_first_waitlisted(system: System) -> None:
    async with system.client() as client:
        net = Network(client)
        sakky, kao = await net.institution("sakky", member=True), await net.institution("kao", member=True)
        edupoli = await net.institution("edupoli", member=False)
        offering = await net.offering(sakky, seats=1)
        outside = (await net.enrol(offering, edupoli, "ext-2")).json()
        waiting = (await net.enrol(offering, kao, "kao-2")).json()
        assert (outside["status"], waiting["status"], waiting["waitlist_position"]) == (
            "awaiting_commitment",
            "waitlisted",
            1,
        )
        commitment = await eventually(lambda: commitment_for(client, outside["id"]), timeout=15)
        rejected = await client.post(f"/api/billing/commitments/{commitment['id']}/reject", json={"reason": "no"})
        assert rejected.status_code == 200

        async def promoted_and_confirmed() -> bool:
            return await status_of(client, waiting["id"]) == "confirmed"

        await eventually(promoted_and_confirmed, timeout=20)
        assert await status_of(client, outside["id"]) == "rejected"

        async def report_agrees() -> bool:
            line = await participants(client, offering)
            return (line.get("confirmed"), line.get("rejected"), line.get("waitlisted")) == (1, 1, 0)

        await eventually(report_agrees, timeout=15)


async def test_the_gateway_answers_bad_requests_with_problem_json(system: System) -> None:
    async with system.client() as client:
        bad_json = await client.post("/api/enrolments", content=b"{nope", headers={"content-type": "application/json"})
        wrong_type = await client.post("/api/catalogue/institutions", json={"id": "x y", "names": {}, "member": "?"})
        too_big = await client.post(
            "/api/catalogue/courses", content=b"x" * 1_100_000, headers={"content-type": "application/json"}
        )
        unknown = await client.get("/api/nowhere")
        missing = await client.get("/api/enrolments/does-not-exist")
        for response, status in ((bad_json, 400), (wrong_type, 422), (too_big, 413), (unknown, 404), (missing, 404)):
            assert response.status_code == status, response.text
            assert response.headers["content-type"].startswith("application/problem+json")
            assert response.json()["detail"]
            assert response.headers.get("x-request-id")
        listed = await get_json(client, "/api/catalogue/institutions", page_size=500)
        assert "x y" not in {item["id"] for item in listed["items"]}


async def test_every_service_is_healthy_ready_and_measured_through_the_gateway(system: System) -> None:
    async with system.client() as client:
        for prefix in ("catalogue", "enrolments", "billing", "reports"):
            ready = await get_json(client, f"/api/{prefix}/ready")
            assert ready["status"] == "ready" and ready["database"] == "ok" and ready["broker"] == "ok"
            metrics = await client.get(f"/api/{prefix}/metrics")
            assert "http_requests_total" in metrics.text
            spec = await get_json(client, f"/api/{prefix}/openapi.json")
            assert spec["paths"]
        enrolment_metrics = (await client.get("/api/enrolments/metrics")).text
        assert 'events_published_total{service="enrolment",type="enrolment.requested"}' in enrolment_metrics
        assert "outbox_backlog" in enrolment_metrics and "event_lag_seconds_bucket" in enrolment_metrics


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str) -> int:
    """One GET on an open keep-alive connection; its status, or 0 if the server had closed the connection."""
    writer.write(f"GET {path} HTTP/1.1\r\nHost: service\r\n\r\n".encode())
    await writer.drain()
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return 0
    length = next(
        int(v) for k, _, v in (line.partition(b":") for line in head.split(b"\r\n")) if k.lower() == b"content-length"
    )
    await reader.readexactly(length)
    return int(head[9:12])


async def test_a_service_keeps_an_idle_connection_open_longer_than_the_gateway_does(system: System) -> None:
    # The gateway drops idle upstream connections after 60 s; were a service to drop them first (uvicorn's
    # default is 5 s), a request could go out on a connection the service is closing, and a POST would get a
    # 502 (the benchmark once saw one in 19,550 enrolments). After 6 s idle the connection still answers.
    reader, writer = await asyncio.open_connection("127.0.0.1", system.ports["enrolment"])
    try:
        assert await _exchange(reader, writer, "/api/enrolments/health") == 200
        await asyncio.sleep(6)
        assert await _exchange(reader, writer, "/api/enrolments/health") == 200
    finally:
        writer.close()


async def test_reports_go_by_url_to_the_reporting_process_or_its_read_only_reader(system: System) -> None:
    """With a read-only reporting API process beside reporting's own (`TARJOTIN_REPORTING_READERS`, decision
    004; the test system has one on SQLite), the gateway sends each report URL always to the same one of
    them, both serve, and they answer alike. Without readers every report goes to reporting's process."""
    years = ("2024-2025", "2025-2026", "2026-2027")
    paths = [f"/api/reports/{kind}?academic_year={year}" for kind in ("participants", "completions") for year in years]
    paths += [f"/api/reports/completions?academic_year={year}&group_by=provider" for year in years]
    paths += [
        f"/api/reports/supply-demand?academic_year={year}&group_by={group}"
        for year in years
        for group in ("subject", "level")
    ]
    paths += [f"/api/reports/billing?academic_year={year}" for year in years]
    paths += [f"/api/reports/participants?academic_year={year}&group_by=home_institution" for year in years]
    # 21 URLs: all of them landing on one of two processes by chance is a one-in-a-million event.
    async with system.client() as client:
        for _ in range(2):
            for path in paths:
                response = await client.get(path)
                assert response.status_code == 200, response.text
    served_by: dict[str, set[str]] = {}
    for line in (system.log_dir / "gateway-access.log").read_text().splitlines():
        entry = json.loads(line)
        if entry["uri"] in paths:
            served_by.setdefault(entry["uri"], set()).add(entry["upstream"])
    assert set(served_by) == set(paths)
    assert all(len(upstreams) == 1 for upstreams in served_by.values()), served_by  # a URL: one process
    writer = f"127.0.0.1:{system.ports['reporting']}"
    readers = [f"127.0.0.1:{system.ports[f'reader{i}']}" for i in range(1, system.readers + 1)]
    assert set().union(*served_by.values()) == {writer, *readers}
    async with httpx.AsyncClient(timeout=30, headers=ADMIN) as direct:
        answers = [(await direct.get(f"http://{host}{paths[0]}")).json() for host in (writer, *readers)]
    assert all(answer == answers[0] for answer in answers)


def test_only_reportings_own_worker_process_runs_at_a_lower_priority(system: System) -> None:
    """A split reporting worker runs at nice 10 (decision 012); every other process, reporting's combined
    process on SQLite included (it answers report requests too), at the priority it was started with."""
    base = os.getpriority(os.PRIO_PROCESS, 0)
    priorities = {
        pidfile.stem: os.getpriority(os.PRIO_PROCESS, int(pidfile.read_text().strip()))
        for pidfile in (system.log_dir.parent / "pids").glob("*.pid")
    }
    lowered = {"reporting-worker": min(base + 10, 19)} if system.db == "postgres" else {}
    assert priorities == {name: lowered.get(name, base) for name in priorities}
    assert set(lowered) <= set(priorities), priorities


def test_only_the_reporting_process_with_the_worker_may_write(system: System) -> None:
    """Reporting's API processes that run apart from its worker (the `api` of split processes, the readers)
    get the read-only engine; the process that runs the worker (`worker`, or `all` on SQLite) never does."""
    flag = b"TARJOTIN_REPORTING_DATABASE_READ_ONLY=true"
    read_only: dict[str, bool] = {}
    for pidfile in (system.log_dir.parent / "pids").glob("reporting-*.pid"):
        environ = Path(f"/proc/{pidfile.read_text().strip()}/environ").read_bytes().split(b"\0")
        read_only[pidfile.stem.removeprefix("reporting-")] = flag in environ
    writer = "all" if system.db == "sqlite" else "worker"
    expected = {writer: False, **{f"reader{i}": True for i in range(1, system.readers + 1)}}
    if system.db == "postgres":
        expected["api"] = True
    assert read_only == expected
