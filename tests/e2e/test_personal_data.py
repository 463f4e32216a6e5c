"""No personal data leaves the enrolment service's database: not in events, not in any log.

Students' names, emails and learner ids go into enrolment requests and come back in the enrolment
service's answers; everything else (events, billing, reports, every process's log and the gateway's
access log) must only ever see the pseudonymous `student_ref`. The test drives a full run through the
gateway - confirmations, an outside institution's accepted commitment, a waitlist promotion after a
withdrawal, results, a refused request, an idempotent replay, a data export and an erasure - while a
queue of its own (binding key `#`) captures every event published on the system's exchange; then it
stops the system (so every process has written all it will) and searches the captured events and every
log file for each name, name part, email and learner id, raw and in escaped forms.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, quote_plus

import aio_pika
import httpx
import pytest
from aio_pika.abc import AbstractIncomingMessage

from shared.bus.topology import declare_exchange
from tests.support.infra import AMQP_URL, eventually
from tests.support.system import Network, System

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class Person:
    learner_id: str
    first: str
    last: str
    email: str

    @property
    def name(self) -> str:
        return f"{self.first} {self.last}"

    @property
    def student(self) -> dict[str, str]:
        return {"learner_id": self.learner_id, "name": self.name, "email": self.email}

    def values(self) -> list[str]:
        return [self.learner_id, self.name, self.first, self.last, self.email]


def people(tag: str, n: int) -> list[Person]:
    # Non-ASCII letters, so that JSON's \u escapes and percent-encoding have something to change.
    return [
        Person(
            learner_id=f"OID-{tag}-{i:02d}",
            first=f"Ölli{tag}{i:02d}",
            last=f"Yksityisyydenmäki{tag}{i:02d}",
            email=f"olli.yksityinen.{tag}{i:02d}@koulu.example.fi",
        )
        for i in range(n)
    ]


def forms(value: str) -> set[str]:
    """The ways a value may be written down: raw, JSON-escaped, URL-encoded, Python- and nginx-escaped."""
    utf8 = value.encode()
    found = {
        value,
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        quote(value),
        quote_plus(value),
        value.encode("unicode_escape").decode(),
        "".join(f"\\x{b:02X}" if b > 127 else chr(b) for b in utf8),
        "".join(f"\\x{b:02x}" if b > 127 else chr(b) for b in utf8),
    }
    return {form.lower() for form in found}


def leaks(text: str, needles: dict[str, str]) -> list[str]:
    """Each needle form found in `text` (case-insensitively), with a little context."""
    lowered = text.lower()
    found = []
    for form, value in needles.items():
        at = lowered.find(form)
        if at >= 0:
            found.append(f"{value!r} as {form!r}: ...{text[max(0, at - 120) : at + len(form) + 60]!r}...")
    return found


def ok(response: httpx.Response, *statuses: int) -> Any:
    assert response.status_code in (statuses or (200,)), response.text
    return response.json()


async def test_no_name_email_or_learner_id_in_any_event_or_log(system: System) -> None:
    captured: list[tuple[str, bytes]] = []
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        exchange = await declare_exchange(channel, system.bus.exchange)
        queue = await channel.declare_queue("", exclusive=True, auto_delete=True)
        await queue.bind(exchange, routing_key="#")

        async def keep(message: AbstractIncomingMessage) -> None:
            async with message.process():
                envelope = {
                    "headers": message.headers,
                    "message_id": message.message_id,
                    "correlation_id": message.correlation_id,
                    "type": message.type,
                    "app_id": message.app_id,
                    "user_id": message.user_id,
                }
                extra = json.dumps(envelope, default=str).encode()
                captured.append((message.routing_key or "", message.body + b"\n" + extra))

        await queue.consume(keep)
        everyone, api_answers = await full_run(system)

        def seen() -> Counter[str]:
            return Counter(key for key, _ in captured)

        expected = {  # p0-p8 but p7 (refused); p6 waits first; p5 withdraws; p0 and p1 get results
            "enrolment.requested": 7,
            "enrolment.confirmed": 8,
            "enrolment.waitlisted": 1,
            "enrolment.withdrawn": 1,
            "enrolment.completed": 2,
            "commitment.created": 7,
            "commitment.accepted": 7,
        }

        async def all_seen() -> bool:
            counts = seen()
            return all(counts[key] >= n for key, n in expected.items())

        try:
            await eventually(all_seen, timeout=60, interval=0.5)
        except TimeoutError:
            pytest.fail(f"expected at least {expected} events, captured {dict(seen())}")
        await asyncio.sleep(1)  # what the last events set off (reports, chargeable commitments) is published too

    # Stop every process, so that all they will ever log is written.
    await asyncio.to_thread(system.script, "down")

    needles = {form: value for person in everyone for value in person.values() for form in forms(value)}
    # The search works: the enrolment service's own answers do hold the personal data.
    assert leaks(api_answers, needles), "the needles are not found where they must be"

    problems: list[str] = []
    for key, body in captured:
        problems += [f"event {key}: {leak}" for leak in leaks(body.decode(errors="replace"), needles)]

    logs = sorted(p for p in system.log_dir.rglob("*") if p.is_file())
    sizes = {p.name: p.stat().st_size for p in logs}
    assert sizes.get("gateway-access.log", 0) > 0, f"no gateway access log: {sizes}"
    for service in ("catalogue", "enrolment", "billing", "reporting"):
        running = [size for name, size in sizes.items() if name.startswith(service) and "migrate" not in name]
        assert any(running), f"no {service} log: {sizes}"
    access = (system.log_dir / "gateway-access.log").read_text(errors="replace")
    assert access.count('"/api/enrolments"') >= 10 and "/withdraw" in access and "/erase" in access, access[-2000:]
    for path in logs:
        text = path.read_bytes().decode(errors="replace")
        problems += [f"{path.relative_to(system.log_dir)}: {leak}" for leak in leaks(text, needles)]

    assert not problems, f"{len(problems)} leaks of personal data:\n" + "\n".join(problems[:40])


async def full_run(system: System) -> tuple[list[Person], str]:
    """Enrol people every way there is; returns them and the API answers that show their data."""
    answers: list[str] = []
    async with system.client() as admin:
        net = Network(admin)
        everyone = people(net.tag, 9)
        p0, p1, p2, p3, p4, p5, p6, p7, p8 = everyone
        provider = await net.institution("tietosuoja", member=True)
        home = await net.institution("koti", member=True)
        outside = await net.institution("ulko", member=False)
        roomy = await net.offering(provider, seats=20)
        single = await net.offering(provider, seats=1)

        async def enrol(offering: str, institution: str, person: Person, key: str) -> dict[str, Any]:
            payload = {"offering_id": offering, "home_institution_id": institution, "student": person.student}

            async def attempt() -> httpx.Response | None:
                response = await admin.post("/api/enrolments", json=payload, headers={"Idempotency-Key": key})
                waits = "not open" in response.text or "Home institution" in response.text  # not there yet
                return None if response.status_code in (404, 422) and waits else response

            response: httpx.Response = await eventually(attempt, timeout=30)
            answers.append(response.text)
            return dict(ok(response, 200, 201))

        members = [await enrol(roomy, home, p, f"pd-{net.tag}-{i}") for i, p in enumerate((p0, p1, p2, p3))]
        external = await enrol(roomy, outside, p4, f"pd-{net.tag}-4")
        first = await enrol(single, home, p5, f"pd-{net.tag}-5")
        waiting = await enrol(single, home, p6, f"pd-{net.tag}-6")
        assert waiting["status"] == "waitlisted", waiting
        replay = await enrol(roomy, home, p2, f"pd-{net.tag}-2")  # the same request again: the same enrolment
        assert replay["id"] == members[2]["id"]
        last = await enrol(roomy, home, p8, f"pd-{net.tag}-8")

        # Refused requests carry personal data too: a bad email, and a home institution that does not exist.
        bad = {**p7.student, "email": f"{p7.learner_id}-not-an-email"}
        refused = await admin.post(
            "/api/enrolments", json={"offering_id": roomy, "home_institution_id": home, "student": bad}
        )
        assert refused.status_code == 422, refused.text
        nowhere = await admin.post(
            "/api/enrolments",
            json={"offering_id": roomy, "home_institution_id": f"nowhere-{net.tag}", "student": p7.student},
        )
        assert nowhere.status_code in (404, 422), nowhere.text

        # The outside institution's commitment needs a decision.
        async def pending() -> str | None:
            listed = ok(await admin.get("/api/billing/commitments", params={"enrolment_id": external["id"]}))
            items = listed["items"]
            return str(items[0]["id"]) if items and items[0]["status"] == "pending" else None

        commitment = await eventually(pending, timeout=30)
        ok(await admin.post(f"/api/billing/commitments/{commitment}/accept", json={"decided_by": "tester"}))

        async def confirmed(*enrolments: dict[str, Any]) -> bool:
            for enrolment in enrolments:
                if (ok(await admin.get(f"/api/enrolments/{enrolment['id']}")))["status"] != "confirmed":
                    return False
            return True

        await eventually(lambda: confirmed(*members, external, first, last), timeout=60, interval=0.5)
        # p5 withdraws: p6 gets the seat.
        ok(await admin.post(f"/api/enrolments/{first['id']}/withdraw", json={"by": "tester"}))
        await eventually(lambda: confirmed(waiting), timeout=60, interval=0.5)
        passed = {"outcome": "passed", "grade": "9"}
        ok(await admin.post(f"/api/enrolments/{members[0]['id']}/result", json=passed))
        ok(await admin.post(f"/api/enrolments/{members[1]['id']}/result", json={"outcome": "interrupted"}))

        # A data export, an erasure, a listing.
        export = await admin.get(f"/api/enrolments/students/{members[0]['student_ref']}")
        ok(export)
        answers.append(export.text)
        ok(await admin.post(f"/api/enrolments/students/{members[3]['student_ref']}/erase"))
        listing = await admin.get("/api/enrolments", params={"offering_id": roomy, "page_size": 100})
        ok(listing)
        answers.append(listing.text)

        # Billing and reports have caught up.
        async def reported() -> bool:
            lines = (ok(await admin.get("/api/reports/participants", params={"offering_id": roomy})))["items"]
            return bool(lines) and (lines[0].get("confirmed"), lines[0].get("completed")) == (4, 2)  # p2-p4, p8; p0-p1

        await eventually(reported, timeout=60, interval=0.5)
        for path in ("/api/billing/commitments", "/api/reports/participants", "/api/reports/completions"):
            ok(await admin.get(path))
    return everyone, "\n".join(answers)
