"""Load Tarjotin's demo data through the HTTP gateway: institutions, courses, published offerings, enrolments.

    python scripts/demo.py [--gateway http://127.0.0.1:8080] [--wait 60]

The data comes from `demo_data.build()`. Loading is idempotent: every POST carries an Idempotency-Key derived from
the item, so a rerun gets the stored answers back (200) instead of creating duplicates; institutions or courses
that already exist (409) are reused, and publishing an offering that is already published (409) is fine.
Offering dates are relative to today, so a rerun on a later day sends a different body under the same key; the
catalogue refuses that (409) and the offering created on the earlier day is looked up and reused instead.

Enrolments wait (up to --wait seconds) until the enrolment service has heard of the offering and the home
institution through the event bus. A short summary goes to stderr; the exit status is non-zero on failure.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
from demo_data import DemoData, Item, body_of, build

RETRY_STATUSES = frozenset({429, 502, 503, 504})
POLL_SECONDS = 0.5


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

    def __init__(self, base_url: str, timeout: float = 15.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.client = httpx.Client(base_url=self.base_url, timeout=timeout)

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


@dataclass
class Tally:
    """How many items of one kind were created now and how many were there already."""

    new: int = 0
    existing: int = 0

    def __str__(self) -> str:
        return f"{self.new + self.existing} ({self.new} new, {self.existing} already there)"


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
    warnings: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The summary as a few lines of text."""
        statuses = ", ".join(f"{n} {status}" for status, n in sorted(self.statuses.items())) or "none"
        published = self.published_now + self.already_published
        return [
            f"  institutions  {self.institutions}",
            f"  courses       {self.courses}",
            f"  offerings     {published} published ({self.published_now} now, {self.already_published} already); "
            f"created {self.offerings}",
            f"  enrolments    {self.enrolments}: {statuses}",
            *(f"  warning: {w}" for w in self.warnings),
        ]


class Loader:
    """Sends the demo data set through the gateway, in dependency order."""

    def __init__(self, gateway: Gateway, data: DemoData, wait: float) -> None:
        self.gateway = gateway
        self.data = data
        self.wait = wait
        self.summary = Summary()
        self.course_ids: dict[str, str] = {}  # course key → server id
        self.offering_ids: dict[str, str] = {}  # offering key → server id
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
        for enrolment in self.data.enrolments:
            self.enrolment(enrolment)
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

    def enrolment(self, item: Item) -> None:
        """Enrol one student, waiting until the offering and home institution have reached the enrolment service."""
        offering_id = self.offering_ids.get(item["offering_id"])
        what = f"enrolling {item['student']['learner_id']} in {item['offering_id']}"
        if offering_id is None:
            self.summary.warnings.append(f"{what}: the offering was not loaded; skipped")
            return
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
                    return
                raise DemoError(f"{what}: HTTP {response.status_code}: {detail}")
            if time.monotonic() >= deadline:
                raise DemoError(
                    f"{what}: still not known to the enrolment service after {self.wait:g} s ({detail}); "
                    "are the catalogue and enrolment workers running?"
                )
            time.sleep(POLL_SECONDS)
        enrolment = response.json()
        if response.status_code == 201:
            self.summary.enrolments.new += 1
        else:  # a replay answers as the first time did; the status may have moved on since
            self.summary.enrolments.existing += 1
            current = self.gateway.call("GET", f"/api/enrolments/{enrolment['id']}")
            if current.status_code == 200:
                enrolment = current.json()
        self.summary.statuses[str(enrolment["status"])] += 1


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description="Load Tarjotin demo data through the HTTP gateway (idempotent).")
    parser.add_argument("--gateway", default="http://127.0.0.1:8080", help="gateway base URL (%(default)s)")
    parser.add_argument(
        "--wait",
        type=float,
        default=60.0,
        help="seconds to wait for offerings and institutions to reach the enrolment service (%(default)s)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Load the demo data; 0 on success, 1 with a message on stderr otherwise."""
    args = parse_args(argv)
    started = time.monotonic()
    gateway = Gateway(args.gateway)
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
