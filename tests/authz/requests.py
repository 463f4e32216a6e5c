"""One request builder per route of the matrix: given the caller's role and own or other, the request to send.

"own" targets institution A's data (the callers act for A), "other" the same kind of data of B. A builder
whose request changes state makes a fresh target first (as the network admin) or takes one from the
world's pools, so that what one row does never changes what another row sees; requests whose target is
read-only or whose change is a no-op (PATCH to the value it already has) share the world's targets.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

import httpx

from tests.authz import Route, Side, route_shape
from tests.authz.world import (
    MUNICIPALITY,
    TEACHER,
    Institution,
    World,
    course_body,
    enrol,
    expect,
    offering_body,
    student_body,
)
from tests.support.auth import bearer
from tests.support.infra import short_id


@dataclass(frozen=True)
class Probe:
    """What the network admin reads to tell whether a refused request changed anything: some fields of
    the target (or its absence), or whether a marker (a new item's unique code) shows up in a list."""

    url: str
    fields: tuple[str, ...] = ()
    params: dict[str, str] = field(default_factory=dict)
    marker: str | None = None

    async def snapshot(self, admin: httpx.AsyncClient) -> Any:
        response = await admin.get(self.url, params=self.params)
        if self.marker is not None:
            expect(response, f"probe {self.url}")
            return self.marker in response.text
        if response.status_code != 200:
            return response.status_code
        body = response.json()
        return {name: body.get(name) for name in self.fields}


@dataclass(frozen=True)
class Call:
    """A request to send through the gateway; `learner_id` is the student token's, when it matters, and
    `probe` what must stay as it is when a request that would change state is refused."""

    method: str
    url: str
    params: dict[str, str] = field(default_factory=dict)
    json: Any = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    learner_id: str | None = None
    probe: Probe | None = None

    async def send(self, client: httpx.AsyncClient, token: dict[str, str] | None = None) -> httpx.Response:
        """Send as `client`'s caller, or as the caller whose `token` (an Authorization header, or none) is given."""
        headers = {**self.headers, **(token or {})}
        request = client.build_request(
            self.method, self.url, params=self.params, json=self.json, content=self.content, headers=headers
        )
        return await client.send(request)

    def unfiltered(self) -> Call:
        return replace(self, params={})

    def __str__(self) -> str:
        query = "&".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.method} {self.url}{'?' + query if query else ''}"


@dataclass(frozen=True)
class Target:
    """What a builder knows: the world, an admin client for fresh targets, the side and the caller's role."""

    world: World
    admin: httpx.AsyncClient
    route: Route
    side: Side
    role: str

    @property
    def inst(self) -> Institution:
        return self.world.of(self.side)

    def url(self, *params: str) -> str:
        return self.route.url(*params)


T = TypeVar("T")
Builder = Callable[[Target], Awaitable[Call]]
BUILDERS: dict[tuple[str, str, str], Builder] = {}
# Routes whose rows each take a fresh target from a world pool (one per row and side).
PENDING_POOL = frozenset(
    ("billing", "POST", route_shape(p))
    for p in ("/commitments/{id}/accept", "/commitments/{id}/reject", "/commitments/accept", "/commitments/reject")
)
CONFIRMED_POOL = frozenset({("enrolments", "POST", route_shape("/{id}/result"))})


def builds(service: str, method: str, path: str) -> Callable[[Builder], Builder]:
    def register(builder: Builder) -> Builder:
        BUILDERS[(service, method, route_shape(path))] = builder
        return builder

    return register


async def build(target: Target) -> Call:
    builder = BUILDERS.get(target.route.shape)
    assert builder is not None, f"no request builder for {target.route}; add one in tests/authz/requests.py"
    return await builder(target)


def caller_headers(role: str, world: World, learner_id: str | None = None) -> dict[str, str]:
    """The token of a caller acting for A (a student: A's base student unless the target names another)."""
    if role == "anonymous":
        return {}
    if role == "student":
        return bearer("student", world.a.id, learner_id or world.a.learner_id, subject=f"authz-student-{short_id()}")
    if role in ("counsellor", "provider_staff", "finance"):
        return bearer(role, world.a.id, subject=f"authz-{role}")
    return bearer(role, subject=f"authz-{role}")  # network-wide roles act for no one institution


# --- fresh targets, made by the network admin -----------------------------------------------------------


async def fresh_offering(t: Target, *, publish: bool) -> str:
    created = await t.admin.post("/api/catalogue/offerings", json=offering_body(t.inst.course_id, seats=10))
    offering_id = str(expect(created, "a fresh offering", 201)["id"])
    if publish:
        expect(await t.admin.post(f"/api/catalogue/offerings/{offering_id}/publish"), "publish a fresh offering")
    t.inst.keep(offering_id)
    return offering_id


async def fresh_enrolment(t: Target) -> dict[str, Any]:
    enrolment = await enrol(t.admin, t.inst, t.inst.new_learner())
    t.inst.keep(enrolment["id"], enrolment["student_ref"], enrolment["student"]["learner_id"])
    return enrolment


def own_learner(t: Target, enrolment: dict[str, Any]) -> str | None:
    """A student's token names the target's learner when the target is their own."""
    return str(enrolment["student"]["learner_id"]) if t.side == "own" else None


def offering_change(t: Target, offering_id: str) -> Call:
    probe = Probe(f"/api/catalogue/offerings/{offering_id}", fields=("status", "version"))
    return Call("POST", t.url(offering_id), probe=probe)


def enrolment_probe(enrolment_id: str) -> Probe:
    return Probe(f"/api/enrolments/{enrolment_id}", fields=("status", "student", "grade"))


def commitment_probe(commitment_id: str) -> Probe:
    return Probe(f"/api/billing/commitments/{commitment_id}", fields=("status", "decided_by", "reason"))


def take(pool: list[T], what: str) -> T:
    assert pool, f"the world's pool of {what} ran out; size it from the matrix in the test's world fixture"
    return pool.pop()


def csv_bytes(row: dict[str, Any]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(row), lineterminator="\n")
    writer.writeheader()
    writer.writerow(row)
    return out.getvalue().encode()


# --- catalogue ---------------------------------------------------------------------------------------


@builds("catalogue", "GET", "/institutions")
async def list_institutions(t: Target) -> Call:
    return Call("GET", t.url(), params={"page_size": "500"})


@builds("catalogue", "GET", "/institutions/{id}")
async def get_institution(t: Target) -> Call:
    return Call("GET", t.url(t.inst.id))


@builds("catalogue", "POST", "/institutions")
async def register_institution(t: Target) -> Call:
    slug = f"authz-new-{short_id()}"
    body = {"id": slug, "names": {"fi": "Uusi"}, "kind": "upper_secondary", "member": True, "region": "Pohjois-Savo"}
    return Call("POST", t.url(), json=body, probe=Probe(f"/api/catalogue/institutions/{slug}"))


@builds("catalogue", "PATCH", "/institutions/{id}")
async def update_institution(t: Target) -> Call:
    return Call("PATCH", t.url(t.inst.id), json={"municipality": MUNICIPALITY})  # what it already is


@builds("catalogue", "GET", "/pricing-guidelines/{academic_year}")
async def get_guideline(t: Target) -> Call:
    return Call("GET", t.url(t.world.academic_year))


@builds("catalogue", "PUT", "/pricing-guidelines/{academic_year}")
async def put_guideline(t: Target) -> Call:
    return Call("PUT", t.url(t.world.academic_year), json=t.world.guideline)  # the values it already has


@builds("catalogue", "GET", "/courses")
async def list_courses(t: Target) -> Call:
    return Call("GET", t.url(), params={"provider": t.inst.id})


@builds("catalogue", "GET", "/courses/{id}")
async def get_course(t: Target) -> Call:
    return Call("GET", t.url(t.inst.course_id))


@builds("catalogue", "POST", "/courses")
async def create_course(t: Target) -> Call:
    body = course_body(t.inst.id)
    probe = Probe("/api/catalogue/courses", params={"provider": t.inst.id, "page_size": "500"}, marker=body["code"])
    return Call("POST", t.url(), json=body, probe=probe)


@builds("catalogue", "PATCH", "/courses/{id}")
async def update_course(t: Target) -> Call:
    return Call("PATCH", t.url(t.inst.course_id), json={"teacher_contact": TEACHER})  # what it already is


@builds("catalogue", "GET", "/offerings")
async def search_offerings(t: Target) -> Call:
    return Call("GET", t.url(), params={"provider": t.inst.id})


@builds("catalogue", "GET", "/offerings/{id}")
async def get_offering(t: Target) -> Call:
    return Call("GET", t.url(t.inst.offering_id))


@builds("catalogue", "POST", "/offerings")
async def create_offering(t: Target) -> Call:
    marker = f"authz-{short_id()}"
    probe = Probe("/api/catalogue/offerings", params={"provider": t.inst.id, "page_size": "500"}, marker=marker)
    return Call("POST", t.url(), json=offering_body(t.inst.course_id, seats=10, external_id=marker), probe=probe)


@builds("catalogue", "PATCH", "/offerings/{id}")
async def update_offering(t: Target) -> Call:
    return Call("PATCH", t.url(t.inst.offering_id), json={"min_participants": 1})  # what it already is


@builds("catalogue", "POST", "/offerings/{id}/publish")
async def publish_offering(t: Target) -> Call:
    return offering_change(t, await fresh_offering(t, publish=False))


@builds("catalogue", "POST", "/offerings/{id}/cancel")
async def cancel_offering(t: Target) -> Call:
    call = offering_change(t, await fresh_offering(t, publish=True))
    return replace(call, json={"reason": "authorisation matrix"})


@builds("catalogue", "POST", "/offerings/{id}/close")
async def close_offering(t: Target) -> Call:
    return offering_change(t, await fresh_offering(t, publish=True))


@builds("catalogue", "POST", "/offerings/{id}/complete")
async def complete_offering(t: Target) -> Call:
    return offering_change(t, await fresh_offering(t, publish=True))


@builds("catalogue", "POST", "/imports")
async def import_csv(t: Target) -> Call:
    """One new course and offering for the provider named by the request's `provider_id`."""
    today = date.today()
    row = {
        "external_id": f"authz-{short_id()}",
        "code": f"AUTHZ-{short_id()}",
        "title_fi": "Tuotu",
        "subject": "mathematics",
        "level": "upper_secondary",
        "credits": "1.0",
        "languages": "fi",
        "delivery_mode": "online_self_paced",
        "start_date": today + timedelta(days=30),
        "end_date": today + timedelta(days=90),
        "enrolment_opens": today - timedelta(days=1),
        "enrolment_closes": today + timedelta(days=20),
        "max_participants": 10,
    }
    probe = Probe(
        "/api/catalogue/offerings", params={"provider": t.inst.id, "page_size": "500"}, marker=str(row["external_id"])
    )
    return Call(
        "POST",
        t.url(),
        params={"provider_id": t.inst.id},
        content=csv_bytes(row),
        headers={"Content-Type": "text/csv"},
        probe=probe,
    )


@builds("catalogue", "GET", "/audit-log")
async def catalogue_audit(t: Target) -> Call:
    return Call("GET", t.url(), params={"institution_id": t.inst.id})


# --- enrolments --------------------------------------------------------------------------------------


@builds("enrolments", "POST", "/")
async def request_enrolment(t: Target) -> Call:
    """A new student of the side's institution in its offering; a student token names them when own."""
    learner = t.inst.new_learner()
    t.inst.keep(learner)
    body = {"offering_id": t.inst.offering_id, "home_institution_id": t.inst.id, "student": student_body(learner)}
    probe = Probe("/api/enrolments", params={"offering_id": t.inst.offering_id, "page_size": "500"}, marker=learner)
    return Call("POST", t.url(), json=body, learner_id=learner if t.side == "own" else None, probe=probe)


def enrolment_filter(t: Target) -> dict[str, str]:
    """How each role would ask for its institution's enrolments: provider staff by offering, others by home."""
    if t.role == "provider_staff":
        return {"offering_id": t.inst.offering_id, "page_size": "500"}
    return {"home_institution_id": t.inst.id, "page_size": "500"}


@builds("enrolments", "GET", "/")
async def list_enrolments(t: Target) -> Call:
    return Call("GET", t.url(), params=enrolment_filter(t))


@builds("enrolments", "GET", "/{id}")
async def get_enrolment(t: Target) -> Call:
    return Call("GET", t.url(t.inst.enrolment_id))


@builds("enrolments", "POST", "/{id}/withdraw")
async def withdraw(t: Target) -> Call:
    enrolment = await fresh_enrolment(t)
    probe = enrolment_probe(enrolment["id"])
    return Call("POST", t.url(enrolment["id"]), learner_id=own_learner(t, enrolment), probe=probe)


@builds("enrolments", "POST", "/{id}/result")
async def record_result(t: Target) -> Call:
    enrolment_id, learner_id = take(t.inst.confirmed, "confirmed enrolments")
    body = {"outcome": "passed", "grade": "9"}
    learner = learner_id if t.side == "own" else None
    return Call("POST", t.url(enrolment_id), json=body, learner_id=learner, probe=enrolment_probe(enrolment_id))


@builds("enrolments", "GET", "/students/me")
async def my_data(t: Target) -> Call:
    return Call("GET", t.url())


@builds("enrolments", "GET", "/students/{student_ref}")
async def student_data(t: Target) -> Call:
    return Call("GET", t.url(t.inst.student_ref))


@builds("enrolments", "POST", "/students/{student_ref}/erase")
async def erase_student(t: Target) -> Call:
    enrolment = await fresh_enrolment(t)
    learner = own_learner(t, enrolment)
    return Call("POST", t.url(enrolment["student_ref"]), learner_id=learner, probe=enrolment_probe(enrolment["id"]))


@builds("enrolments", "GET", "/audit-log")
async def enrolment_audit(t: Target) -> Call:
    return Call("GET", t.url(), params={"institution_id": t.inst.id})


# --- billing -----------------------------------------------------------------------------------------


@builds("billing", "GET", "/commitments")
async def list_commitments(t: Target) -> Call:
    return Call("GET", t.url(), params={"payer": t.inst.id, "page_size": "500"})


@builds("billing", "GET", "/commitments/{id}")
async def get_commitment(t: Target) -> Call:
    return Call("GET", t.url(t.inst.commitment_id))


@builds("billing", "POST", "/commitments/{id}/accept")
async def accept(t: Target) -> Call:
    commitment_id = take(t.inst.pending, "pending commitments")
    return Call("POST", t.url(commitment_id), json={"decided_by": "authz"}, probe=commitment_probe(commitment_id))


@builds("billing", "POST", "/commitments/{id}/reject")
async def reject(t: Target) -> Call:
    commitment_id = take(t.inst.pending, "pending commitments")
    body = {"decided_by": "authz", "reason": "authorisation matrix"}
    return Call("POST", t.url(commitment_id), json=body, probe=commitment_probe(commitment_id))


@builds("billing", "POST", "/commitments/accept")
async def accept_many(t: Target) -> Call:
    commitment_id = take(t.inst.pending, "pending commitments")
    body = {"ids": [commitment_id], "decided_by": "authz"}
    return Call("POST", t.url(), json=body, probe=commitment_probe(commitment_id))


@builds("billing", "POST", "/commitments/reject")
async def reject_many(t: Target) -> Call:
    commitment_id = take(t.inst.pending, "pending commitments")
    body = {"ids": [commitment_id], "decided_by": "authz", "reason": "authorisation matrix"}
    return Call("POST", t.url(), json=body, probe=commitment_probe(commitment_id))


@builds("billing", "GET", "/policies/{institution_id}")
async def get_policy(t: Target) -> Call:
    return Call("GET", t.url(t.inst.id))


@builds("billing", "PUT", "/policies/{institution_id}")
async def put_policy(t: Target) -> Call:
    return Call("PUT", t.url(t.inst.id), json={"mode": "manual"})  # what it already is


@builds("billing", "POST", "/invoice-runs")
async def run_invoices(t: Target) -> Call:
    today = datetime.now(UTC).date()
    body = {"period_start": str(today.replace(day=1)), "period_end": str(today), "payee_id": t.inst.id}
    return Call("POST", t.url(), json=body)


@builds("billing", "GET", "/invoices")
async def list_invoices(t: Target) -> Call:
    return Call("GET", t.url(), params={"payee": t.inst.id, "page_size": "500"})


@builds("billing", "GET", "/invoices/{id}")
async def get_invoice(t: Target) -> Call:
    return Call("GET", t.url(t.inst.invoice_id))


@builds("billing", "GET", "/audit-log")
async def billing_audit(t: Target) -> Call:
    return Call("GET", t.url(), params={"institution_id": t.inst.id})


# --- reports -----------------------------------------------------------------------------------------


def report_filter(t: Target) -> dict[str, str]:
    """Provider staff ask about their institution as the provider, everyone else as the home institution."""
    key = "provider" if t.role == "provider_staff" else "home_institution"
    return {key: t.inst.id, "page_size": "500"}


@builds("reports", "GET", "/participants")
async def participants(t: Target) -> Call:
    return Call("GET", t.url(), params=report_filter(t))


@builds("reports", "GET", "/completions")
async def completions(t: Target) -> Call:
    return Call("GET", t.url(), params=report_filter(t))


@builds("reports", "GET", "/billing")
async def billing_report(t: Target) -> Call:
    return Call("GET", t.url(), params={"institution": t.inst.id, "page_size": "500"})


@builds("reports", "GET", "/supply-demand")
async def supply_demand(t: Target) -> Call:
    return Call("GET", t.url(), params={"provider": t.inst.id, "page_size": "500"})


@builds("reports", "GET", "/follow-up/{institution_id}")
async def follow_up(t: Target) -> Call:
    return Call("GET", t.url(t.inst.id))
