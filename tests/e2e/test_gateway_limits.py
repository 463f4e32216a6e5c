"""The gateway's abuse limits (deploy/nginx/tarjotin.conf.template): request rates per bearer token and per
client address on creating enrolments and on the catalogue import, body sizes, and the services' page cap.

The limits are ceilings that ordinary clients with a bounded number of requests in flight never reach (the
chaos test and the benchmark would be paced, not refused), so the floods here open every connection first
and then send all requests within a few milliseconds, as a runaway script with unbounded concurrency does.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import httpx
import pytest

from tests.support.auth import bearer
from tests.support.infra import short_id
from tests.support.system import Network, System

pytestmark = pytest.mark.e2e

PROBLEM = "application/problem+json"
ENROL_FLOOD = 320  # sent at once; the per-token zone takes a burst of 150, so ~160 must be refused
IMPORT_FLOOD = 40  # the per-token import zone refuses beyond 20 (burst=20)
IN_FLIGHT = 100  # burst=150 delay=50: up to 100 waiting; the chaos test keeps 16 in flight, the benchmark 32


@dataclass
class Raw:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += data[:size]
        data = data[size + 2 :]
    return bytes(out)


def _request(method: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: gateway", "Connection: close", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def flood(port: int, requests: list[bytes]) -> list[Raw]:
    """Open one connection per request, then write every request at once; read each answer to EOF."""
    connections = await asyncio.gather(*(asyncio.open_connection("127.0.0.1", port) for _ in requests))
    for (_reader, writer), request in zip(connections, requests, strict=True):
        writer.write(request)  # no await in between: all requests leave within a few milliseconds

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Raw:
        try:
            data = await asyncio.wait_for(reader.read(), timeout=120)
        finally:
            writer.close()
        head, _, body = data.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in header_lines)}
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = _dechunk(body)
        return Raw(int(status_line.split()[1]), headers, body)

    return list(await asyncio.gather(*(answer(r, w) for r, w in connections)))


def enrolment_body(offering: str, home: str, learner: str, padding: int = 0) -> bytes:
    payload = {
        "offering_id": offering,
        "home_institution_id": home,
        "student": {"learner_id": learner, "name": f"Tulva {learner}", "email": f"{learner}@example.fi"},
    }
    return json.dumps(payload).encode() + b" " * padding  # trailing whitespace keeps it valid JSON


def assert_problem(response: Raw | httpx.Response, status: int) -> dict[str, Any]:
    body = response.json()
    got = response.status_code if isinstance(response, httpx.Response) else response.status
    assert got == status, (got, body)
    content_type = response.headers.get("content-type", "")
    assert content_type.startswith(PROBLEM), (status, content_type, body)
    assert body["status"] == status and body["title"] and body["detail"], body
    assert response.headers.get("x-request-id"), "the gateway's request id is missing"
    return dict(body)


async def learners_enrolled(client: httpx.AsyncClient, offering: str) -> set[str]:
    response = await client.get("/api/enrolments", params={"offering_id": offering, "page_size": 500})
    assert response.status_code == 200, response.text
    assert response.json()["total"] <= 500
    return {item["student"]["learner_id"] for item in response.json()["items"]}


async def test_a_flood_from_one_token_is_refused_with_429_while_another_token_gets_through(system: System) -> None:
    async with system.client() as admin:
        net = Network(admin)
        home = await net.institution("tulva", member=True)
        offering = await net.offering(home, seats=1000)
        warm = await net.enrol(offering, home, f"warm-{net.tag}")  # the offering has reached the enrolment service
        assert warm.status_code == 201, warm.text

        runaway = bearer("network_admin", subject=f"runaway-{net.tag}")
        token = runaway["Authorization"].split()[1]
        learners = [f"flood-{net.tag}-{i}" for i in range(ENROL_FLOOD)]
        requests = [
            _request(
                "POST",
                "/api/enrolments",
                # One token, however "Bearer" is spelt: the budget is the token's.
                {
                    "Authorization": f"{'Bearer' if i % 2 else 'bearer'} {token}",
                    "Content-Type": "application/json",
                    "Idempotency-Key": learner,
                },
                enrolment_body(offering, home, learner),
            )
            for i, learner in enumerate(learners)
        ]
        flooding = asyncio.create_task(flood(system.gateway_port, requests))
        await asyncio.sleep(0.05)  # the flood is in: the runaway token's budget is spent
        async with system.client(bearer("network_admin", subject=f"calm-{net.tag}")) as calm:
            other = await calm.post(
                "/api/enrolments",
                content=enrolment_body(offering, home, f"calm-{net.tag}"),
                headers={"Content-Type": "application/json"},
            )
        answers = await flooding
        assert other.status_code == 201, other.text

        statuses = [a.status for a in answers]
        refused = [a for a in answers if a.status == 429]
        assert set(statuses) <= {201, 429}, sorted(set(statuses))
        assert len(refused) >= ENROL_FLOOD // 4, f"only {len(refused)} of {ENROL_FLOOD} refused"
        assert statuses.count(201) >= 50, "the burst allowance let too little through"
        for answer in refused:
            body = assert_problem(answer, 429)
            assert answer.headers.get("retry-after") == "1"
            assert "too many" in body["title"].lower()

        # What was refused created nothing; what got through was created once.
        accepted = {learner for learner, a in zip(learners, answers, strict=True) if a.status == 201}
        enrolled = await learners_enrolled(admin, offering)
        assert {learner for learner in enrolled if learner.startswith("flood-")} == accepted
        assert f"calm-{net.tag}" in enrolled

        # Reading is not limited per token: the runaway token still lists enrolments at once.
        async with system.client(runaway) as same:
            listed = await same.get("/api/enrolments", params={"offering_id": offering})
            assert listed.status_code == 200, listed.text


async def test_a_token_with_up_to_100_requests_in_flight_is_never_refused(system: System) -> None:
    """The chaos test and `make bench` send enrolments flat out with one token and 16-32 requests in flight.

    A token's requests beyond the rate wait (up to 100 of them) rather than being refused, so 100 sent at
    the same instant all get through; they name an unknown offering, so that they are cheap to refuse."""
    token = bearer("network_admin", subject=f"steady-{short_id()}")
    headers = {**token, "Content-Type": "application/json"}
    requests = [
        _request("POST", "/api/enrolments", headers, enrolment_body(f"no-such-{i}", "no-such-home", f"steady-{i}"))
        for i in range(IN_FLIGHT)
    ]
    statuses = [answer.status for answer in await flood(system.gateway_port, requests)]
    assert 429 not in statuses, f"{statuses.count(429)} of {IN_FLIGHT} refused"
    assert set(statuses) <= {404, 422}, sorted(set(statuses))


TODAY = date.today()
CSV_COLUMNS = [
    "external_id", "code", "title_fi", "description_fi", "subject", "level", "credits", "languages",
    "delivery_mode", "start_date", "end_date", "enrolment_opens", "enrolment_closes", "max_participants",
]  # fmt: skip


def csv_file(code: str, description: str = "") -> bytes:
    start = TODAY + timedelta(days=30)
    row = {
        "external_id": f"ext-{code}",
        "code": code,
        "title_fi": "Tulvakurssi",
        "description_fi": description,
        "subject": "mathematics",
        "level": "upper_secondary",
        "credits": "2.0",
        "languages": "fi",
        "delivery_mode": "online_self_paced",
        "start_date": start,
        "end_date": start + timedelta(days=60),
        "enrolment_opens": TODAY - timedelta(days=1),
        "enrolment_closes": start - timedelta(days=5),
        "max_participants": 20,
    }
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerow(row)
    return out.getvalue().encode()


async def course_codes(client: httpx.AsyncClient, provider: str) -> set[str]:
    response = await client.get("/api/catalogue/courses", params={"provider": provider, "page_size": 500})
    assert response.status_code == 200, response.text
    return {item["code"] for item in response.json()["items"]}


async def test_the_csv_import_has_a_stricter_per_token_limit(system: System) -> None:
    async with system.client() as admin:
        provider = await Network(admin).institution("tuonti", member=True)
        path = f"/api/catalogue/imports?provider_id={provider}&dry_run=true"
        token = bearer("network_admin", subject=f"importer-{short_id()}")
        body = csv_file(f"DRY-{short_id()}")
        requests = [_request("POST", path, {**token, "Content-Type": "text/csv"}, body) for _ in range(IMPORT_FLOOD)]
        answers = await flood(system.gateway_port, requests)
        statuses = [a.status for a in answers]
        assert set(statuses) <= {200, 429}, [(a.status, a.body[:300]) for a in answers if a.status not in (200, 429)]
        assert statuses.count(429) >= IMPORT_FLOOD // 4, statuses
        assert statuses.count(200) >= 10, statuses
        for answer in answers:
            if answer.status == 429:
                assert_problem(answer, 429)
        async with system.client(bearer("network_admin", subject=f"other-{short_id()}")) as other:
            response = await other.post(path, content=body, headers={"Content-Type": "text/csv"})
            assert response.status_code == 200, response.text


async def test_oversized_bodies_are_refused_with_413_and_create_nothing(system: System) -> None:
    async with system.client() as admin:
        net = Network(admin)
        home = await net.institution("iso", member=True)
        offering = await net.offering(home, seats=10)
        warm = await net.enrol(offering, home, f"warm-{net.tag}")
        assert warm.status_code == 201, warm.text

        # A valid enrolment made 1.1 MB with trailing whitespace: it would be created if it got through.
        learner = f"huge-{net.tag}"
        too_big = await admin.post(
            "/api/enrolments",
            content=enrolment_body(offering, home, learner, padding=1_100_000),
            headers={"Content-Type": "application/json"},
        )
        assert_problem(too_big, 413)
        assert "1 MB" in too_big.json()["detail"]
        just_fits = await admin.post(
            "/api/enrolments",
            content=enrolment_body(offering, home, f"fits-{net.tag}", padding=900_000),
            headers={"Content-Type": "application/json"},
        )
        assert just_fits.status_code == 201, just_fits.text
        assert learner not in await learners_enrolled(admin, offering)

        # The import may be larger at the gateway (2 MB, for multipart framing around the service's own
        # 1 MiB cap); the service refuses what is over its cap itself, also as problem+json.
        over_service_cap, over_gateway_cap = f"BIG-{short_id()}", f"HUGE-{short_id()}"
        by_service = await admin.post(
            f"/api/catalogue/imports?provider_id={home}",
            content=csv_file(over_service_cap, "x" * 1_500_000),
            headers={"Content-Type": "text/csv"},
        )
        assert_problem(by_service, 413)
        by_gateway = await admin.post(
            f"/api/catalogue/imports?provider_id={home}",
            content=csv_file(over_gateway_cap, "x" * 2_200_000),
            headers={"Content-Type": "text/csv"},
        )
        assert_problem(by_gateway, 413)
        assert "2 MB" in by_gateway.json()["detail"]
        codes = await course_codes(admin, home)
        assert over_service_cap not in codes and over_gateway_cap not in codes


@pytest.mark.parametrize(
    "path",
    ["/api/catalogue/offerings", "/api/enrolments", "/api/billing/commitments", "/api/reports/participants"],
)
async def test_a_page_size_over_the_cap_is_refused_with_422(system: System, path: str) -> None:
    async with system.client() as admin:
        at_cap = await admin.get(path, params={"page_size": 500})
        assert at_cap.status_code == 200, at_cap.text
        over = await admin.get(path, params={"page_size": 501})
        body = assert_problem(over, 422)
        assert "page_size" in body["detail"]
