"""The world the authorisation matrix runs in, seeded through the gateway by the network admin.

Two member institutions, A (the callers' own) and B (the other), each in manual commitment mode, with a
course and a published offering of 1,000 seats, and their own students in their own offering only, so that
everything of B belongs wholly to B:

- a base enrolment, passed, whose commitment was invoiced (one invoice B → B and one A → A);
- a failed enrolment, so that the follow-up report has a line;
- pools of pending commitments and of confirmed enrolments: each matrix row that decides a commitment or
  records a result takes a fresh one, so that rows never depend on one another's order.

Seeding waits for what travels over the bus (commitments, confirmations, results, the report read models)
before the rows run, and `Institution.ids` collects every id of an institution's data for the `filtered`
checks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx

from tests.authz import Side
from tests.support.infra import eventually, short_id
from tests.support.system import Network

SEATS = 1000
TEACHER = "opettaja@example.fi"
MUNICIPALITY = "Kuopio"
WAIT_S = 60.0


def academic_year_of(day: date) -> str:
    first = day.year if day.month >= 8 else day.year - 1
    return f"{first}-{first + 1}"


def offering_body(course_id: str, *, seats: int = SEATS, **extra: Any) -> dict[str, Any]:
    """A valid new offering of `course_id`: starts in 30 days, enrolment open now."""
    today = date.today()
    return {
        "course_id": course_id,
        "start_date": str(today + timedelta(days=30)),
        "end_date": str(today + timedelta(days=90)),
        "enrolment_opens": str(today - timedelta(days=1)),
        "enrolment_closes": str(today + timedelta(days=20)),
        "max_participants": seats,
        **extra,
    }


def course_body(provider_id: str) -> dict[str, Any]:
    return {
        "provider_id": provider_id,
        "code": f"AUTHZ-{short_id()}",
        "titles": {"fi": "Oikeudet", "en": "Permissions"},
        "subject": "mathematics",
        "level": "upper_secondary",
        "credits": "2.0",
        "languages": ["fi"],
        "delivery_mode": "online_self_paced",
        "teacher_contact": TEACHER,
    }


def student_body(learner_id: str) -> dict[str, str]:
    return {"learner_id": learner_id, "name": f"Oppilas {learner_id}", "email": f"{learner_id}@example.fi"}


def expect(response: httpx.Response, what: str, *statuses: int) -> Any:
    assert response.status_code in (statuses or (200,)), f"seeding: {what}: {response.status_code} {response.text}"
    return response.json()


@dataclass
class Institution:
    """One institution's data; every id of it is also in `ids`."""

    id: str
    course_id: str = ""
    offering_id: str = ""
    learner_id: str = ""
    enrolment_id: str = ""
    student_ref: str = ""
    commitment_id: str = ""
    invoice_id: str = ""
    pending: list[str] = field(default_factory=list)
    confirmed: list[tuple[str, str]] = field(default_factory=list)  # (enrolment id, its learner id)
    ids: set[str] = field(default_factory=set)

    def new_learner(self) -> str:
        return f"{self.id}-l-{short_id()}"

    def keep(self, *ids: str) -> None:
        self.ids.update(i for i in ids if i)


@dataclass
class World:
    a: Institution
    b: Institution
    academic_year: str
    guideline: dict[str, Any]

    def of(self, side: Side) -> Institution:
        return self.a if side == "own" else self.b


async def seed(admin: httpx.AsyncClient, *, pending: int, confirmed: int) -> World:
    """Seed A and B with `pending` pending commitments and `confirmed` confirmed enrolments each."""
    tag = short_id()
    year = academic_year_of(date.today())
    guideline = expect(await admin.get(f"/api/catalogue/pricing-guidelines/{year}"), "the pricing guideline")
    world = World(Institution(f"authz-a-{tag}"), Institution(f"authz-b-{tag}"), year, guideline)
    for inst in (world.a, world.b):
        await _catalogue(admin, inst)
    for inst in (world.a, world.b):
        await _manual_policy(admin, inst)
    for inst in (world.a, world.b):
        await _enrolments(admin, inst, pending=pending, confirmed=confirmed)
    await _invoice(admin, world)
    for inst in (world.a, world.b):
        await _reports_ready(admin, inst)
    return world


async def _catalogue(admin: httpx.AsyncClient, inst: Institution) -> None:
    letter = inst.id.split("-")[1].upper()
    body = {
        "id": inst.id,
        "names": {"fi": f"Oppilaitos {letter}"},
        "kind": "upper_secondary",
        "member": True,
        "municipality": MUNICIPALITY,
        "region": "Pohjois-Savo",
    }
    expect(await admin.post("/api/catalogue/institutions", json=body), f"register {inst.id}", 201)
    course = expect(await admin.post("/api/catalogue/courses", json=course_body(inst.id)), "a course", 201)
    offering = expect(await admin.post("/api/catalogue/offerings", json=offering_body(course["id"])), "offering", 201)
    expect(await admin.post(f"/api/catalogue/offerings/{offering['id']}/publish"), "publish the offering")
    inst.course_id, inst.offering_id = course["id"], offering["id"]
    inst.keep(inst.id, inst.course_id, inst.offering_id)


async def _manual_policy(admin: httpx.AsyncClient, inst: Institution) -> None:
    """Manual mode keeps commitments pending, once billing has heard of the institution."""

    async def put() -> httpx.Response | None:
        response = await admin.put(f"/api/billing/policies/{inst.id}", json={"mode": "manual"})
        return None if response.status_code == 404 else response

    expect(await eventually(put, timeout=WAIT_S), f"manual policy of {inst.id}")


async def enrol(admin: httpx.AsyncClient, inst: Institution, learner_id: str) -> dict[str, Any]:
    """Enrol a new student of `inst` in its own offering (known to the enrolment service by now)."""
    body = {"offering_id": inst.offering_id, "home_institution_id": inst.id, "student": student_body(learner_id)}
    enrolment: dict[str, Any] = expect(await admin.post("/api/enrolments", json=body), f"enrol {learner_id}", 201)
    return enrolment


async def _enrolments(admin: httpx.AsyncClient, inst: Institution, *, pending: int, confirmed: int) -> None:
    inst.learner_id = inst.new_learner()
    first = await Network(admin).enrol(inst.offering_id, inst.id, inst.learner_id)  # waits for the offering
    base = expect(first, "the base enrolment", 201)
    failed = await enrol(admin, inst, inst.new_learner())
    to_confirm = [await enrol(admin, inst, inst.new_learner()) for _ in range(confirmed)]
    to_leave = [await enrol(admin, inst, inst.new_learner()) for _ in range(pending)]
    everyone = [base, failed, *to_confirm, *to_leave]
    for enrolment in everyone:
        inst.keep(enrolment["id"], enrolment["student_ref"], enrolment["student"]["learner_id"])
    inst.enrolment_id, inst.student_ref = base["id"], base["student_ref"]

    commitments = await _commitments_of(admin, inst, [e["id"] for e in everyone])
    not_pending = {c["id"]: c["status"] for c in commitments.values() if c["status"] != "pending"}
    assert not not_pending, f"seeding: manual mode should leave commitments pending: {not_pending}"
    inst.keep(*(c["id"] for c in commitments.values()))
    inst.commitment_id = commitments[base["id"]]["id"]
    inst.pending = [commitments[e["id"]]["id"] for e in to_leave]

    to_accept = [base, failed, *to_confirm]
    ids = [commitments[e["id"]]["id"] for e in to_accept]
    expect(await admin.post("/api/billing/commitments/accept", json={"ids": ids}), "accept commitments")
    await _statuses(admin, inst, {e["id"] for e in to_accept}, "confirmed")
    inst.confirmed = [(e["id"], e["student"]["learner_id"]) for e in to_confirm]

    for enrolment, outcome in ((base, "passed"), (failed, "failed")):
        result = {"outcome": outcome, "grade": "8" if outcome == "passed" else "4"}
        expect(await admin.post(f"/api/enrolments/{enrolment['id']}/result", json=result), f"result {outcome}")
    await _chargeable(admin, [commitments[base["id"]]["id"], commitments[failed["id"]]["id"]])


async def _commitments_of(
    admin: httpx.AsyncClient, inst: Institution, enrolment_ids: list[str]
) -> dict[str, dict[str, Any]]:
    """Enrolment id → its commitment, once billing has opened every one."""

    async def opened() -> dict[str, dict[str, Any]] | None:
        found: dict[str, dict[str, Any]] = {}
        page = 1
        while True:
            params = {"payer": inst.id, "page_size": "500", "page": str(page)}
            body = expect(await admin.get("/api/billing/commitments", params=params), "list commitments")
            found.update({c["enrolment_id"]: c for c in body["items"]})
            if page * 500 >= body["total"]:
                break
            page += 1
        return found if set(enrolment_ids) <= found.keys() else None

    result: dict[str, dict[str, Any]] = await eventually(opened, timeout=WAIT_S, interval=0.5)
    return result


async def _statuses(admin: httpx.AsyncClient, inst: Institution, enrolment_ids: set[str], status: str) -> None:
    async def reached() -> bool:
        params = {"home_institution_id": inst.id, "status": status, "page_size": "500"}
        body = expect(await admin.get("/api/enrolments", params=params), "list enrolments")
        return enrolment_ids <= {e["id"] for e in body["items"]}

    await eventually(reached, timeout=WAIT_S, interval=0.5)


async def _chargeable(admin: httpx.AsyncClient, commitment_ids: list[str]) -> None:
    async def charged() -> bool:
        for commitment_id in commitment_ids:
            body = expect(await admin.get(f"/api/billing/commitments/{commitment_id}"), "a commitment")
            if body["status"] != "chargeable":
                return False
        return True

    await eventually(charged, timeout=WAIT_S, interval=0.5)


async def _invoice(admin: httpx.AsyncClient, world: World) -> None:
    """One invoice run for this month so far: an invoice A → A and one B → B (base and failed lines)."""
    today = datetime.now(UTC).date()
    body = {"period_start": str(today.replace(day=1)), "period_end": str(today)}
    run = expect(await admin.post("/api/billing/invoice-runs", json=body), "an invoice run", 201)
    for inst in (world.a, world.b):
        mine = [d["id"] for d in run["invoices"] if d["payee_id"] == inst.id and d["payer_id"] == inst.id]
        assert len(mine) == 1, f"seeding: the invoice run made {len(mine)} invoices for {inst.id}: {run}"
        inst.invoice_id = mine[0]
        inst.keep(inst.invoice_id)


async def _reports_ready(admin: httpx.AsyncClient, inst: Institution) -> None:
    """Wait until every report the matrix filters shows this institution's data to the admin."""
    checks: list[tuple[str, dict[str, str], Callable[[dict[str, Any]], bool]]] = [
        ("/api/reports/participants", {"provider": inst.id}, lambda item: item["completed"] >= 2),
        ("/api/reports/completions", {"provider": inst.id}, lambda item: item["passed"] >= 1),
        ("/api/reports/billing", {"institution": inst.id}, lambda item: item["as_provider"]["invoice_count"] >= 1),
        (f"/api/reports/follow-up/{inst.id}", {}, lambda item: True),
    ]

    async def shown() -> bool:
        for path, params, done in checks:
            items = expect(await admin.get(path, params=params), path)["items"]
            if not any(done(item) for item in items):
                return False
        return True

    await eventually(shown, timeout=WAIT_S, interval=0.5)
