"""Load Tarjotin's demo data through the HTTP gateway, then play the network's whole story on it.

    python scripts/demo.py [--gateway http://127.0.0.1:8080] [--wait 60]

First the data of `demo_data.build()`: institutions, courses, published offerings and enrolments (one small
offering is full and has a waitlist). Then its story (`demo_data.Story`), so that every rule shows up in the data:

- a member school in manual mode (its commitments wait for a counsellor; some are accepted, some stay pending) and
  one in automatic mode whose small yearly budget runs out (the commitments beyond it stay pending);
- the outside institution's commitments at the external price: some accepted by hand, one rejected, which releases
  a seat in the full offering and promotes its first waitlisted student;
- a withdrawal before the free-cancellation deadline (free: the commitment is voided) and one after it (charged);
- results: passed (grade, credits), failed, interrupted;
- an offering with enrolments cancelled by its provider (enrolments cancelled, commitments voided);
- an invoice run for this month (what is chargeable by today).

Loading is idempotent: every POST carries an Idempotency-Key derived from the item, so a rerun gets the stored
answers back (200) instead of creating duplicates; institutions or courses that already exist (409) are reused, and
publishing an offering that is already published (409) is fine. Offering dates are relative to today, so a rerun on
a later day sends a different body under the same key; the catalogue refuses that (409) and the offering created on
the earlier day is looked up and reused instead. The story's actions that create nothing (policies, decisions,
withdrawals, results, the cancellation) look at the current state first and are skipped when already done; a 409
from an action that raced with its own effect counts as done. The invoice run's key names the month: a rerun on
a later day of the month is refused (409) and counted as done.

Whatever travels between the services through the bus is waited for by polling, up to --wait seconds each time:
enrolments wait until the enrolment service has heard of the offering and the home institution, decisions until
billing has opened the commitment, and so on. A summary goes to stderr; the exit status is non-zero on failure.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial
from typing import Any, TypeVar

import httpx
from demo_data import DemoData, Item, Story, body_of, build

RETRY_STATUSES = frozenset({429, 502, 503, 504})
POLL_SECONDS = 0.5
RESULTS = frozenset({"passed", "failed", "interrupted"})
DECIDED = frozenset({"confirmed", "rejected", "withdrawn", "cancelled"} | RESULTS)  # no longer waiting for billing
T = TypeVar("T")


class DemoError(Exception):
    """A step failed in a way that waiting will not fix; the message says what and why."""


def detail_of(response: httpx.Response) -> str:
    """The problem+json `detail` of an error response, or the start of its text."""
    try:
        payload = response.json()
    except ValueError:
        return response.text[:300] or response.reason_phrase
    if isinstance(payload, dict) and payload.get("detail"):
        return str(payload["detail"])
    return response.text[:300]


class Gateway:
    """A small JSON client for the gateway that rides out brief unavailability (connection errors, 429, 502–504)."""

    def __init__(self, base_url: str, token: str, timeout: float = 15.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.client = httpx.Client(
            base_url=self.base_url, timeout=timeout, headers={"Authorization": f"Bearer {token}"}
        )

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()

    def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        key: str | None = None,
        params: dict[str, Any] | None = None,
        retries: int = 5,
    ) -> httpx.Response:
        """Send one request; retrying is safe because every creating POST carries an Idempotency-Key."""
        headers = {"Idempotency-Key": key} if key else {}
        for attempt in range(retries + 1):
            last = attempt == retries
            try:
                response = self.client.request(method, path, json=json, params=params, headers=headers)
            except httpx.TransportError as exc:
                if last:
                    raise DemoError(
                        f"the gateway at {self.base_url} does not answer ({type(exc).__name__}: {exc}); "
                        "start the system first (make up, or scripts/tarjotin.sh up) or pass --gateway"
                    ) from exc
            else:
                if response.status_code not in RETRY_STATUSES or last:
                    return response
            time.sleep(min(0.25 * 2**attempt, 4.0))
        raise AssertionError("unreachable")

    def expect(self, response: httpx.Response, ok: set[int], what: str) -> Any:
        """The JSON body of a response whose status is in `ok`; otherwise a DemoError naming the step."""
        if response.status_code not in ok:
            raise DemoError(f"{what}: HTTP {response.status_code}: {detail_of(response)}")
        return response.json() if response.content else None

    def get(self, path: str, what: str, params: dict[str, Any] | None = None) -> Any:
        """The JSON body of a GET that must answer 200."""
        return self.expect(self.call("GET", path, params=params), {200}, what)


def poll(what: str, wait: float, probe: Callable[[], T | None]) -> T:
    """Call `probe` until it returns something (not None); a DemoError naming `what` after `wait` seconds."""
    deadline = time.monotonic() + wait
    while True:
        value = probe()
        if value is not None:
            return value
        if time.monotonic() >= deadline:
            raise DemoError(
                f"waited {wait:g} s for {what}; are the workers running (scripts/tarjotin.sh status)? "
                "Rerun to go on (the demo is idempotent), or pass a longer --wait"
            )
        time.sleep(POLL_SECONDS)


@dataclass
class Tally:
    """How many items of one kind were created (or actions done) now and how many were there already."""

    new: int = 0
    existing: int = 0

    def __str__(self) -> str:
        return f"{self.new + self.existing} ({self.new} new, {self.existing} already there)"

    def done(self) -> str:
        """The tally of an action: `2 (2 now, 0 done before)`."""
        return f"{self.new + self.existing} ({self.new} now, {self.existing} done before)"


STORY_STEPS = (
    "policies set",
    "accepted by hand",
    "rejected by hand",
    "promoted from the waitlist",
    "withdrawn before the deadline",
    "withdrawn after the deadline",
    "results recorded",
    "offerings cancelled",
    "invoice runs",
)


@dataclass
class Summary:
    """What one run did, for the report on stderr."""

    institutions: Tally = field(default_factory=Tally)
    courses: Tally = field(default_factory=Tally)
    offerings: Tally = field(default_factory=Tally)
    published_now: int = 0
    already_published: int = 0
    enrolments: Tally = field(default_factory=Tally)
    statuses: Counter[str] = field(default_factory=Counter)
    story_enrolments: Tally = field(default_factory=Tally)
    steps: dict[str, Tally] = field(default_factory=lambda: {step: Tally() for step in STORY_STEPS})
    invoices: str = ""
    outcome: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The summary as a few lines of text."""
        statuses = ", ".join(f"{n} {status}" for status, n in sorted(self.statuses.items())) or "none"
        published = self.published_now + self.already_published
        steps = [f"    {step:<30}{tally.done()}" for step, tally in self.steps.items()]
        return [
            f"  institutions  {self.institutions}",
            f"  courses       {self.courses}",
            f"  offerings     {published} published ({self.published_now} now, {self.already_published} already); "
            f"created {self.offerings}",
            f"  enrolments    {self.enrolments}: {statuses}",
            "  story",
            f"    {'enrolments':<30}{self.story_enrolments}",
            *steps,
            *([f"    {self.invoices}"] if self.invoices else []),
            *(f"  {line}" for line in self.outcome),
            *(f"  warning: {w}" for w in self.warnings),
        ]


def counted(counter: Counter[str]) -> str:
    """`3 confirmed, 1 pending` in alphabetical order, or `none`."""
    return ", ".join(f"{n} {name}" for name, n in sorted(counter.items())) or "none"


class Loader:
    """Sends the demo data set through the gateway, in dependency order."""

    def __init__(self, gateway: Gateway, data: DemoData, wait: float) -> None:
        self.gateway = gateway
        self.data = data
        self.wait = wait
        self.summary = Summary()
        self.course_ids: dict[str, str] = {}  # course key → server id
        self.offering_ids: dict[str, str] = {}  # offering key → server id
        self.enrolment_ids: dict[str, str] = {}  # enrolment key → server id
        self.provider_offerings: dict[str, list[dict[str, Any]]] = {}  # provider id → its offerings, when needed

    def run(self) -> Summary:
        """Load everything; raises DemoError on the first step that cannot go on."""
        self.check_gateway()
        self.guidelines()
        for institution in self.data.institutions:
            self.institution(institution)
        for course in self.data.courses:
            self.course(course)
        ordinal: Counter[str] = Counter()
        for offering in self.data.offerings:
            ordinal[offering["course_id"]] += 1
            self.offering(offering, ordinal[offering["course_id"]])
        for item in self.data.enrolments:
            enrolled = self.enrolment(item)
            if enrolled is not None:
                tally_created(self.summary.enrolments, enrolled[1])
                self.summary.statuses[str(enrolled[0]["status"])] += 1
        if self.data.story is not None:
            Storyteller(self, self.data.story).run()
        return self.summary

    def check_gateway(self) -> None:
        """Fail fast, with a clear message, when nothing answers at the gateway address."""
        response = self.gateway.call("GET", "/health", retries=2)
        self.gateway.expect(response, {200}, f"gateway health check at {self.gateway.base_url}/health")

    def guidelines(self) -> None:
        """Set the pricing guideline of each academic year the offerings may fall in."""
        for year, body in self.data.guidelines.items():
            response = self.gateway.call("PUT", f"/api/catalogue/pricing-guidelines/{year}", json=body)
            self.gateway.expect(response, {200}, f"setting the {year} pricing guideline")

    def institution(self, item: Item) -> None:
        """Register one institution; one that is already registered is fine."""
        response = self.gateway.call("POST", "/api/catalogue/institutions", json=body_of(item), key=item["key"])
        if response.status_code in (200, 409):
            self.summary.institutions.existing += 1
            return
        self.gateway.expect(response, {201}, f"registering institution {item['id']}")
        self.summary.institutions.new += 1

    def course(self, item: Item) -> None:
        """Create one course, or find the provider's existing course with the same code."""
        what = f"creating course {item['provider_id']}/{item['code']}"
        response = self.gateway.call("POST", "/api/catalogue/courses", json=body_of(item), key=item["key"])
        if response.status_code == 409:
            problem = response.json()
            course_id = problem.get("course_id") or self.find_course(item["provider_id"], item["code"])
            if course_id is None:
                raise DemoError(f"{what}: HTTP 409: {detail_of(response)}")
            self.summary.courses.existing += 1
        else:
            course_id = self.gateway.expect(response, {200, 201}, what)["id"]
            if response.status_code == 201:
                self.summary.courses.new += 1
            else:
                self.summary.courses.existing += 1
        self.course_ids[item["key"]] = course_id

    def find_course(self, provider: str, code: str) -> str | None:
        """The id of a provider's course with the given code, if there is one."""
        for course in self.pages("/api/catalogue/courses", {"provider": provider}, f"listing {provider}'s courses"):
            if course["code"] == code:
                return str(course["id"])
        return None

    def pages(self, path: str, params: dict[str, Any], what: str) -> list[dict[str, Any]]:
        """All items of a paginated list."""
        items: list[dict[str, Any]] = []
        page = 1
        while True:
            response = self.gateway.call("GET", path, params={**params, "page": page, "page_size": 500})
            listing = self.gateway.expect(response, {200}, what)
            items.extend(listing["items"])
            if len(items) >= listing["total"] or not listing["items"]:
                return items
            page += 1

    def offering(self, item: Item, ordinal: int) -> None:
        """Create one offering of its course (or find the one made on an earlier day), then publish it."""
        course = self.data.course_of(item)
        course_id = self.course_ids[item["course_id"]]
        what = f"creating offering {item['key']}"
        body = {**body_of(item), "course_id": course_id}
        response = self.gateway.call("POST", "/api/catalogue/offerings", json=body, key=item["key"])
        if response.status_code == 409:
            # The key was used on an earlier day, when the today-relative dates were different.
            offering_id = self.earlier_offering(course, course_id, ordinal)
            if offering_id is None:
                self.summary.warnings.append(f"{what}: {detail_of(response)} (no earlier offering found; skipped)")
                return
            self.summary.offerings.existing += 1
        else:
            offering_id = self.gateway.expect(response, {200, 201}, what)["id"]
            if response.status_code == 201:
                self.summary.offerings.new += 1
            else:
                self.summary.offerings.existing += 1
        self.offering_ids[item["key"]] = offering_id
        self.publish(item, offering_id)

    def earlier_offering(self, course: Item, course_id: str, ordinal: int) -> str | None:
        """The `ordinal`-th existing offering of a course (by start date), if there are that many."""
        provider = course["provider_id"]
        if provider not in self.provider_offerings:  # existed before this run, so one listing per provider is enough
            self.provider_offerings[provider] = self.pages(
                "/api/catalogue/offerings", {"provider": provider}, f"listing {provider}'s offerings"
            )
        found = self.provider_offerings[provider]
        mine = sorted((o for o in found if o["course_id"] == course_id), key=lambda o: (o["start_date"], o["id"]))
        return str(mine[ordinal - 1]["id"]) if len(mine) >= ordinal else None

    def publish(self, item: Item, offering_id: str) -> None:
        """Publish an offering; one that is already published answers 409, which is fine."""
        response = self.gateway.call(
            "POST", f"/api/catalogue/offerings/{offering_id}/publish", key=f"{item['key']}-publish"
        )
        if response.status_code == 409:
            self.summary.already_published += 1
            return
        self.gateway.expect(response, {200}, f"publishing offering {item['key']} ({offering_id})")
        self.summary.published_now += 1

    def enrolment(self, item: Item) -> tuple[dict[str, Any], bool] | None:
        """Enrol one student, waiting until the offering and home institution have reached the enrolment service.

        Returns the enrolment as it is now and whether it was created now; None if it was skipped (with a warning).
        """
        offering_id = self.offering_ids.get(item["offering_id"])
        what = f"enrolling {item['student']['learner_id']} in {item['offering_id']}"
        if offering_id is None:
            self.summary.warnings.append(f"{what}: the offering was not loaded; skipped")
            return None
        body = {**body_of(item), "offering_id": offering_id}
        deadline = time.monotonic() + self.wait
        while True:
            response = self.gateway.call("POST", "/api/enrolments", json=body, key=item["key"])
            if response.status_code in (200, 201):
                break
            detail = detail_of(response)
            propagating = response.status_code == 404 or (
                response.status_code == 422 and "home institution" in detail.lower()
            )
            if not propagating:
                if response.status_code == 409:  # e.g. the window of an offering from an earlier day has closed
                    self.summary.warnings.append(f"{what}: {detail}; skipped")
                    return None
                raise DemoError(f"{what}: HTTP {response.status_code}: {detail}")
            if time.monotonic() >= deadline:
                raise DemoError(
                    f"{what}: still not known to the enrolment service after {self.wait:g} s ({detail}); "
                    "are the catalogue and enrolment workers running?"
                )
            time.sleep(POLL_SECONDS)
        enrolment = response.json()
        self.enrolment_ids[item["key"]] = str(enrolment["id"])
        if response.status_code == 200:  # a replay answers as the first time did; the status may have moved on since
            current = self.gateway.call("GET", f"/api/enrolments/{enrolment['id']}")
            if current.status_code == 200:
                enrolment = current.json()
        return enrolment, response.status_code == 201


def tally_created(tally: Tally, created: bool) -> None:
    """Count one item as new or as already there."""
    if created:
        tally.new += 1
    else:
        tally.existing += 1


class Storyteller:
    """Plays the data's `Story` through the gateway once the data is loaded.

    Every step looks at the current state first and acts only if its effect is not there yet, so a rerun does
    nothing. What the services do in answer, through the bus, is waited for by polling (`poll`).
    """

    def __init__(self, loader: Loader, story: Story) -> None:
        self.gateway = loader.gateway
        self.data = loader.data
        self.wait = loader.wait
        self.loader = loader
        self.story = story
        self.summary = loader.summary
        self.steps = loader.summary.steps

    def run(self) -> None:
        """The story, step by step; each step waits for the effects the next one depends on."""
        self.settle_loaded()
        self.set_policies()
        self.enrol()
        self.decide()
        self.withdraw()
        self.record_results()
        self.cancel()
        self.run_invoices()
        self.wait_for_reports()
        self.describe_outcome()

    # --- reading the current state ---------------------------------------------------------------------------

    def enrolment(self, enrolment_id: str) -> dict[str, Any]:
        """An enrolment as it is now."""
        return dict(self.gateway.get(f"/api/enrolments/{enrolment_id}", f"reading enrolment {enrolment_id}"))

    def commitment(self, enrolment_id: str) -> dict[str, Any] | None:
        """The payment commitment of an enrolment, once billing has opened it."""
        listing = self.gateway.get(
            "/api/billing/commitments",
            f"reading the commitment of enrolment {enrolment_id}",
            {"enrolment_id": enrolment_id},
        )
        return dict(listing["items"][0]) if listing["items"] else None

    def id_of(self, key: str) -> str | None:
        """The server id of an enrolment of the data; None (with a warning) if it was not loaded."""
        enrolment_id = self.loader.enrolment_ids.get(key)
        if enrolment_id is None:
            self.summary.warnings.append(f"{key} was not loaded; its step of the story is skipped")
        return enrolment_id

    def learner(self, key: str) -> str:
        """The learner id of an enrolment of the data, for messages."""
        return str(self.data.item(key)["student"]["learner_id"])

    # --- waiting -----------------------------------------------------------------------------------------------

    def settle(self, enrolment_id: str, what: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """Wait until billing has answered an enrolment that holds a seat: its commitment is open and, if the
        commitment was decided, the enrolment shows it (confirmed or rejected). Returns both as they are then."""

        def probe() -> tuple[dict[str, Any], dict[str, Any] | None] | None:
            enrolment = self.enrolment(enrolment_id)
            if enrolment["status"] == "waitlisted":
                return enrolment, None
            commitment = self.commitment(enrolment_id)
            if enrolment["status"] != "awaiting_commitment":
                return enrolment, commitment  # decided, or left the waitlist some other way (then no commitment)
            if commitment is None or commitment["status"] != "pending":
                return None  # billing has not opened it yet, or the decision has not reached the enrolment yet
            return enrolment, commitment

        return poll(f"billing to answer {what}", self.wait, probe)

    def wait_enrolment(self, enrolment_id: str, statuses: Iterable[str], what: str) -> dict[str, Any]:
        """Wait until an enrolment is in one of `statuses`."""
        wanted = set(statuses)

        def probe() -> dict[str, Any] | None:
            enrolment = self.enrolment(enrolment_id)
            return enrolment if enrolment["status"] in wanted else None

        return poll(f"{what} (enrolment {' or '.join(sorted(wanted))})", self.wait, probe)

    def wait_commitment(self, enrolment_id: str, statuses: Iterable[str], what: str) -> dict[str, Any]:
        """Wait until the commitment of an enrolment is in one of `statuses`."""
        wanted = set(statuses)

        def probe() -> dict[str, Any] | None:
            commitment = self.commitment(enrolment_id)
            return commitment if commitment is not None and commitment["status"] in wanted else None

        return poll(f"{what} (commitment {' or '.join(sorted(wanted))})", self.wait, probe)

    # --- the steps ---------------------------------------------------------------------------------------------

    def settle_loaded(self) -> None:
        """Let billing answer the loaded enrolments first: the budget below counts what they already use."""
        for item in self.data.enrolments:
            enrolment_id = self.loader.enrolment_ids.get(item["key"])
            if enrolment_id is not None:
                self.settle(enrolment_id, f"the enrolment of {item['student']['learner_id']}")

    def set_policies(self) -> None:
        """Manual mode for one school, a small budget for another: before their students of the story enrol."""
        for institution, body in self.story.policies.items():
            current = poll(
                f"billing to hear of institution {institution}", self.wait, partial(self.policy, institution)
            )
            if same_policy(current, body):
                self.steps["policies set"].existing += 1
                continue
            response = self.gateway.call("PUT", f"/api/billing/policies/{institution}", json=body)
            self.gateway.expect(response, {200}, f"setting the policy of {institution}")
            self.steps["policies set"].new += 1

    def policy(self, institution: str) -> dict[str, Any] | None:
        """An institution's commitment policy; None while billing has not heard of the institution."""
        response = self.gateway.call("GET", f"/api/billing/policies/{institution}")
        if response.status_code == 404:
            return None
        return dict(self.gateway.expect(response, {200}, f"reading the policy of {institution}"))

    def enrol(self) -> None:
        """The story's students, one at a time: each waits for billing's answer, so the budget runs out in order."""
        for item in self.story.enrolments:
            enrolled = self.loader.enrolment(item)
            if enrolled is None:
                continue
            tally_created(self.summary.story_enrolments, enrolled[1])
            self.settle(str(enrolled[0]["id"]), f"the enrolment of {item['student']['learner_id']}")

    def decide(self) -> None:
        """Counsellors accept (in bulk) and reject commitments by hand; the rejection promotes a waitlisted student."""
        waiting = {key: self.id_of(key) for key in self.story.promoted}
        was_waitlisted = {
            key: self.enrolment(eid)["status"] == "waitlisted" for key, eid in waiting.items() if eid is not None
        }
        to_accept: list[str] = []
        decided: list[str] = []
        for decision in self.story.decisions:
            enrolment_id = self.id_of(decision.enrolment)
            if enrolment_id is None:
                continue
            step = self.steps["accepted by hand" if decision.accept else "rejected by hand"]
            _, commitment = self.settle(enrolment_id, f"the enrolment of {self.learner(decision.enrolment)}")
            wanted = "accepted" if decision.accept else "rejected"
            if commitment is None or commitment["status"] not in ("pending", wanted):
                found = commitment["status"] if commitment else "no commitment"
                self.summary.warnings.append(f"{decision.enrolment}: {found}, so it cannot be {wanted}; skipped")
                continue
            decided.append(enrolment_id)
            if commitment["status"] == wanted:
                step.existing += 1
            elif decision.accept:
                to_accept.append(str(commitment["id"]))
            else:
                self.reject(commitment, decision.reason, step)
        self.accept(to_accept)
        for enrolment_id in decided:
            self.wait_enrolment(enrolment_id, DECIDED, "the decision to reach the enrolment")
        for key, enrolment_id in waiting.items():
            if enrolment_id is not None:
                self.promoted(key, enrolment_id, was_waitlisted.get(key, False))

    def accept(self, commitment_ids: list[str]) -> None:
        """Accept pending commitments in one bulk request (all or none)."""
        if not commitment_ids:
            return
        body = {"ids": commitment_ids, "decided_by": "counsellor"}
        response = self.gateway.call("POST", "/api/billing/commitments/accept", json=body)
        if response.status_code == 409:  # one was decided meanwhile: accept the others one by one
            for commitment_id in commitment_ids:
                one = self.gateway.call("POST", f"/api/billing/commitments/{commitment_id}/accept")
                self.gateway.expect(one, {200, 409}, f"accepting commitment {commitment_id}")
                tally_created(self.steps["accepted by hand"], one.status_code == 200)
            return
        self.gateway.expect(response, {200}, "accepting commitments in bulk")
        self.steps["accepted by hand"].new += len(commitment_ids)

    def reject(self, commitment: dict[str, Any], reason: str | None, step: Tally) -> None:
        """Reject one pending commitment; 409 means it was decided meanwhile."""
        body = {"decided_by": "counsellor", "reason": reason}
        response = self.gateway.call("POST", f"/api/billing/commitments/{commitment['id']}/reject", json=body)
        self.gateway.expect(response, {200, 409}, f"rejecting commitment {commitment['id']}")
        tally_created(step, response.status_code == 200)

    def promoted(self, key: str, enrolment_id: str, was_waitlisted: bool) -> None:
        """Wait until the released seat has gone to the first waitlisted student and billing has answered."""
        what = f"{self.learner(key)} to leave the waitlist"
        self.wait_enrolment(enrolment_id, DECIDED | {"awaiting_commitment"}, what)
        self.settle(enrolment_id, f"the promoted enrolment of {self.learner(key)}")
        tally_created(self.steps["promoted from the waitlist"], was_waitlisted)

    def withdraw(self) -> None:
        """Withdraw confirmed students: free before the deadline (voided), charged after it (chargeable)."""
        for withdrawal in self.story.withdrawals:
            enrolment_id = self.id_of(withdrawal.enrolment)
            if enrolment_id is None:
                continue
            step = self.steps["withdrawn after the deadline" if withdrawal.late else "withdrawn before the deadline"]
            learner = self.learner(withdrawal.enrolment)
            enrolment, _ = self.settle(enrolment_id, f"the enrolment of {learner}")
            if enrolment["status"] == "withdrawn":
                step.existing += 1
            elif enrolment["status"] != "confirmed":
                self.summary.warnings.append(f"{learner} is {enrolment['status']}, not confirmed; not withdrawn")
                continue
            else:
                response = self.gateway.call("POST", f"/api/enrolments/{enrolment_id}/withdraw", json={"by": "student"})
                self.gateway.expect(response, {200, 409}, f"withdrawing {learner}")
                tally_created(step, response.status_code == 200)
            expected = "chargeable" if withdrawal.late else "voided"
            commitment = self.wait_commitment(enrolment_id, {"chargeable", "voided"}, f"billing to hear {learner} left")
            if commitment["status"] != expected:
                self.summary.warnings.append(f"{learner} withdrew, but the commitment is {commitment['status']}")

    def record_results(self) -> None:
        """The provider records passed, failed and interrupted; each makes the commitment chargeable."""
        for result in self.story.results:
            enrolment_id = self.id_of(result.enrolment)
            if enrolment_id is None:
                continue
            learner = self.learner(result.enrolment)
            enrolment, _ = self.settle(enrolment_id, f"the enrolment of {learner}")
            step = self.steps["results recorded"]
            if enrolment["status"] in RESULTS:
                step.existing += 1
            elif enrolment["status"] != "confirmed":
                self.summary.warnings.append(f"{learner} is {enrolment['status']}, not confirmed; no result recorded")
                continue
            else:
                response = self.gateway.call("POST", f"/api/enrolments/{enrolment_id}/result", json=result.body())
                self.gateway.expect(response, {200, 409}, f"recording the result of {learner}")
                tally_created(step, response.status_code == 200)
            self.wait_commitment(enrolment_id, {"chargeable"}, f"billing to hear the result of {learner}")

    def cancel(self) -> None:
        """The provider cancels an offering that has enrolments: they are cancelled, their commitments voided."""
        offering_id = self.loader.offering_ids.get(self.story.cancelled)
        if offering_id is None:
            self.summary.warnings.append(f"{self.story.cancelled} was not loaded; not cancelled")
            return
        path = f"/api/catalogue/offerings/{offering_id}"
        step = self.steps["offerings cancelled"]
        if self.gateway.get(path, f"reading offering {offering_id}")["status"] == "cancelled":
            step.existing += 1
        else:
            response = self.gateway.call("POST", f"{path}/cancel", json={"reason": self.story.cancel_reason})
            self.gateway.expect(response, {200, 409}, f"cancelling offering {offering_id}")
            tally_created(step, response.status_code == 200)
        for item in self.story.enrolments:
            enrolment_id = self.loader.enrolment_ids.get(item["key"])
            if item["offering_id"] == self.story.cancelled and enrolment_id is not None:
                learner = item["student"]["learner_id"]
                self.wait_enrolment(enrolment_id, {"cancelled"}, f"the cancellation to reach {learner}")
                self.wait_commitment(enrolment_id, {"voided"}, f"billing to void the commitment of {learner}")

    def run_invoices(self) -> None:
        """This month's invoice run. The chargeable commitments it gathers exist by now: the withdrawal and result
        steps waited for them, and the run itself charges those whose free-cancellation deadline has passed."""
        item = self.story.invoice_run
        step = self.steps["invoice runs"]
        response = self.gateway.call("POST", "/api/billing/invoice-runs", json=body_of(item), key=item["key"])
        if response.status_code == 409:
            step.existing += 1
            self.summary.invoices = f"this month's invoice run was made on an earlier day ({detail_of(response)})"
            return
        run = self.gateway.expect(response, {200, 201}, "running the invoices")
        tally_created(step, response.status_code == 201)
        self.summary.invoices = (
            f"invoice run {run['period_start']}..{run['period_end']}: {run['invoice_count']} invoices "
            f"({run['invoiced_total']} EUR), {run['credit_note_count']} credit notes ({run['credited_total']} EUR)"
        )

    def wait_for_reports(self) -> None:
        """The reports are built from the events: wait until they show the results, the late withdrawal and the
        cancellation of the story (what a reader of the reports would look for first)."""
        late = self.loader.offering_ids.get(self.story.late_offering)
        cancelled = self.loader.offering_ids.get(self.story.cancelled)
        if late is None or cancelled is None:
            return
        in_cancelled = sum(1 for item in self.story.enrolments if item["offering_id"] == self.story.cancelled)
        expected = {
            ("completions", late, "completed"): len(self.story.results),
            ("participants", late, "withdrawn_late"): sum(1 for w in self.story.withdrawals if w.late),
            ("participants", cancelled, "cancelled"): in_cancelled,
        }
        for (report, offering_id, column), count in expected.items():
            self.wait_report(report, offering_id, column, count)

    def wait_report(self, report: str, offering_id: str, column: str, count: int) -> None:
        """Wait until a report's row for an offering counts at least `count` in `column`."""

        def probe() -> bool | None:
            listing = self.gateway.get(f"/api/reports/{report}", f"the {report} report", {"offering_id": offering_id})
            return True if listing["items"] and listing["items"][0][column] >= count else None

        poll(f"the {report} report to show {count} {column} in offering {offering_id}", self.wait, probe)

    def describe_outcome(self) -> None:
        """Where the demo's enrolments and commitments stand now, for the summary."""
        ids = {
            self.loader.enrolment_ids[item["key"]]
            for item in self.all_enrolments()
            if item["key"] in self.loader.enrolment_ids
        }
        enrolments = self.loader.pages("/api/enrolments", {}, "listing enrolments")
        commitments = self.loader.pages("/api/billing/commitments", {}, "listing commitments")
        statuses = Counter(str(e["status"]) for e in enrolments if e["id"] in ids)
        mine = [c for c in commitments if c["enrolment_id"] in ids]
        by_status = Counter(str(c["status"]) for c in mine)
        owed = sum((Decimal(c["chargeable_amount"]) for c in mine if c["status"] == "chargeable"), Decimal("0.00"))
        pending = sum((Decimal(c["amount"]) for c in mine if c["status"] == "pending"), Decimal("0.00"))
        external = sum(1 for c in mine if c["price_kind"] == "external")
        self.summary.outcome = [
            f"now: {len(ids)} demo enrolments: {counted(statuses)}",
            f"     {len(mine)} commitments ({external} at the external price): {counted(by_status)}; "
            f"{pending} EUR pending, {owed} EUR chargeable",
        ]

    def all_enrolments(self) -> list[Item]:
        """The loaded enrolments and the story's."""
        return [*self.data.enrolments, *self.story.enrolments]


def same_policy(current: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Whether a policy already is as wanted (budgets compared as amounts: `240.0` is `240.00`)."""

    def amount(value: Any) -> Decimal | None:
        return None if value is None else Decimal(str(value))

    return bool(
        current.get("mode") == wanted.get("mode")
        and amount(current.get("yearly_budget")) == amount(wanted.get("yearly_budget"))
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description="Load Tarjotin demo data through the HTTP gateway (idempotent).")
    parser.add_argument("--gateway", default="http://127.0.0.1:8080", help="gateway base URL (%(default)s)")
    parser.add_argument(
        "--wait",
        type=float,
        default=60.0,
        help="seconds to wait, each time, for what travels between the services through the bus (%(default)s)",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("TARJOTIN_TOKEN"),
        help="a network admin's bearer token (default: $TARJOTIN_TOKEN, else one from --issuer)",
    )
    parser.add_argument(
        "--issuer",
        default=os.environ.get("TARJOTIN_DEV_ISSUER_URL", "http://127.0.0.1:8105"),
        help="the development token issuer (%(default)s)",
    )
    return parser.parse_args(argv)


def admin_token(issuer: str) -> str:
    """A network admin token from the development issuer (the demo acts for the network)."""
    try:
        response = httpx.get(f"{issuer.rstrip('/')}/token", params={"role": "network_admin", "sub": "demo"}, timeout=10)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise DemoError(f"no token from the development issuer at {issuer} ({exc}); pass --token") from exc
    return str(response.json()["access_token"])


def main(argv: list[str] | None = None) -> int:
    """Load the demo data; 0 on success, 1 with a message on stderr otherwise."""
    args = parse_args(argv)
    started = time.monotonic()
    try:
        gateway = Gateway(args.gateway, args.token or admin_token(args.issuer))
    except DemoError as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return 1
    try:
        summary = Loader(gateway, build(), args.wait).run()
    except DemoError as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("demo: interrupted; rerun to finish (it is idempotent)", file=sys.stderr)
        return 130
    finally:
        gateway.close()
    print(f"demo: loaded through {gateway.base_url} in {time.monotonic() - started:.1f} s", file=sys.stderr)
    print("\n".join(summary.lines()), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
