"""Applying a read CSV file: every row is checked against the database first, then the good ones are
written in the caller's transaction (a dry run rolls it back). A row is applied whole or not at all.

Courses are found by (provider, code), offerings by (provider, external_id). The events an import
causes are the ones the same changes made through the API would cause, one per offering:
`offering.published` for rows with `publish=true` on a draft, `offering.updated` for published
offerings whose own or course fields changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from services.catalogue import domain, search, views
from services.catalogue.handlers.courses import SHOWN_IN_OFFERINGS, CreateCourse, course_row
from services.catalogue.handlers.offerings import offering_row, publish_drafts, touch_offerings
from services.catalogue.imports.csvfile import Row
from services.catalogue.tables import courses, institutions, offerings
from shared.errors import Conflict, DomainError, Invalid

Key = tuple[str, str]


@dataclass
class State:
    """What the database holds of the file's providers, courses and offerings, read once."""

    providers: set[str]
    courses: dict[Key, dict[str, Any]]
    offerings: dict[Key, dict[str, Any]]
    guidelines: dict[str, domain.Guideline]

    def guideline(self, academic_year: str) -> domain.Guideline:
        return self.guidelines.get(academic_year, domain.DEFAULT_GUIDELINE)


@dataclass
class Step:
    """What one good row will do."""

    row: Row
    course_id: str | None  # None: a course new to the database
    course_diff: dict[str, Any]
    existing: dict[str, Any] | None
    values: dict[str, Any]
    publish: bool
    status: str = "unchanged"
    offering_id: str | None = None


def refuse_other_providers(rows: list[Row], own: str) -> None:
    """Mark every row of a provider other than `own` as refused (provider staff import only their own)."""
    for row in rows:
        if row.provider_id is not None and row.provider_id != own:
            row.errors.append(
                f"provider_id: {row.provider_id!r} is another institution; the staff of {own!r} may import only "
                "their own institution's courses and offerings"
            )


async def load_state(conn: AsyncConnection, rows: list[Row]) -> State:
    providers = {r.provider_id for r in rows if r.provider_id}
    codes = {r.code for r in rows if r.code}
    external_ids = {r.external_id for r in rows if r.external_id}
    known = set((await conn.execute(sa.select(institutions.c.id).where(institutions.c.id.in_(providers)))).scalars())
    course_rows = (
        await conn.execute(sa.select(courses).where(courses.c.provider_id.in_(providers), courses.c.code.in_(codes)))
    ).all()
    found = await views.find_offerings(
        conn, offerings.c.provider_id.in_(providers), offerings.c.external_id.in_(external_ids)
    )
    return State(
        providers=known,
        courses={(r.provider_id, r.code): views.course_dict(r) for r in course_rows},
        offerings={(o["provider_id"], o["external_id"]): o for o in found},
        guidelines=await views.all_guidelines(conn),
    )


def _differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    return sorted(name for name in a.keys() | b.keys() if a.get(name) != b.get(name))


def plan(rows: list[Row], state: State) -> list[Step]:
    """Check every row against the database state and the rows before it; errors go on the rows."""
    steps: list[Step] = []
    offering_lines: dict[Key, int] = {}
    first_course_row: dict[Key, Row] = {}
    for row in rows:
        if row.errors:
            continue
        assert row.provider_id and row.code and row.external_id
        if row.provider_id not in state.providers:
            row.errors.append(f"provider_id: {row.provider_id!r} is not a registered institution")
            continue
        okey, ckey = (row.provider_id, row.external_id), (row.provider_id, row.code)
        if okey in offering_lines:
            row.errors.append(f"external_id: {row.external_id!r} is also on line {offering_lines[okey]}")
            continue
        first = first_course_row.get(ckey)
        if first is not None and (fields := _differences(first.course, row.course)):
            row.errors.append(
                f"course {row.code!r} is described differently on line {first.line} ({', '.join(fields)}); "
                "every row of one course must repeat the same course columns"
            )
            continue
        try:
            step = _step(row, state, first is None)
        except DomainError as exc:
            row.errors.append(exc.message)
            continue
        offering_lines[okey] = row.line
        first_course_row.setdefault(ckey, row)
        steps.append(step)
    return steps


def _step(row: Row, state: State, first_of_course: bool) -> Step:
    assert row.provider_id and row.code and row.external_id
    course = state.courses.get((row.provider_id, row.code))
    course_diff = domain.revise_course(course, row.course) if course and first_of_course else {}
    guideline = state.guideline(domain.academic_year_of(row.offering["start_date"]))
    existing = state.offerings.get((row.provider_id, row.external_id))
    course_id = course["id"] if course else None
    if existing is None:
        plan_fields = {name: row.offering[name] for name in domain.PLAN_FIELDS if name != "min_participants"}
        values = domain.new_offering_values(
            domain.OfferingPlan(**plan_fields, min_participants=row.offering.get("min_participants", 1)),
            row.course["credits"],
            guideline,
            member_price=row.offering.get("member_price"),
            external_price=row.offering.get("external_price"),
            deadline=row.offering.get("free_cancellation_deadline"),
        )
        return Step(row, course_id, course_diff, None, values, publish=row.publish)
    if course is None or existing["course_id"] != course["id"]:
        raise Invalid(
            f"external_id {row.external_id!r} is an offering of course {existing['course_code']!r}, not "
            f"{row.code!r}; an offering cannot move to another course"
        )
    values = domain.revise_offering(existing, row.offering, row.course["credits"], guideline)
    if row.publish and existing["status"] == domain.OfferingStatus.CANCELLED:
        raise Conflict("publish: the offering is cancelled and cannot be published again")
    publish = row.publish and existing["status"] == domain.OfferingStatus.DRAFT
    return Step(row, course_id, course_diff, existing, values, publish=publish)


async def apply(conn: AsyncConnection, steps: list[Step], correlation_id: str) -> None:
    """Write the planned rows (new courses and offerings in two batches), then index and announce what
    changed, once per offering."""
    course_ids: dict[Key, str] = {}
    new_courses: list[dict[str, Any]] = []
    new_offerings: list[dict[str, Any]] = []
    courses_diffed: set[str] = set()
    courses_shown: set[str] = set()
    changed: set[str] = set()
    to_publish: list[str] = []
    if steps:
        await search.next_generation(conn)
    for step in steps:
        row = step.row
        assert row.provider_id and row.code
        ckey = (row.provider_id, row.code)
        course_id = step.course_id or course_ids.get(ckey)
        if course_id is None:
            new_courses.append(course_row(CreateCourse(provider_id=row.provider_id, code=row.code, **row.course)))
            course_id = new_courses[-1]["id"]
        course_ids[ckey] = course_id
        if step.course_diff:
            await conn.execute(courses.update().where(courses.c.id == course_id).values(**step.course_diff))
            courses_diffed.add(course_id)
            if step.course_diff.keys() & SHOWN_IN_OFFERINGS:
                courses_shown.add(course_id)
        if step.existing is None:
            course = {"id": course_id, "provider_id": row.provider_id}
            new_offerings.append(offering_row(course, {**step.values, "external_id": row.external_id}))
            step.offering_id = new_offerings[-1]["id"]
            step.status = "created"
        else:
            step.offering_id = step.existing["id"]
            if step.values:
                await _update_offering(conn, step.existing, step.values)
                changed.add(step.offering_id)
            if step.values or step.course_diff or step.publish:
                step.status = "updated"
        if step.publish:
            to_publish.append(step.offering_id)
    if new_courses:
        await conn.execute(courses.insert(), new_courses)
    if new_offerings:
        await conn.execute(offerings.insert(), new_offerings)

    await search.index_courses(conn, courses_diffed | {c["id"] for c in new_courses})
    if courses_shown:
        shown = await conn.execute(sa.select(offerings.c.id).where(offerings.c.course_id.in_(courses_shown)))
        changed.update(shown.scalars())
    await touch_offerings(conn, changed - set(to_publish), correlation_id)
    await publish_drafts(conn, to_publish, correlation_id)
    fresh = {o["id"] for o in new_offerings} - changed - set(to_publish)
    await search.index_offerings(conn, offerings.c.id.in_(fresh))


async def _update_offering(conn: AsyncConnection, existing: dict[str, Any], values: dict[str, Any]) -> None:
    o = offerings.c
    written = await conn.execute(
        offerings.update().where(o.id == existing["id"], o.version == existing["version"]).values(**values)
    )
    if written.rowcount != 1:
        raise Conflict("An offering in the file was changed by someone else during the import; import again.")


def report(rows: list[Row], steps: list[Step], state: State, *, dry_run: bool) -> dict[str, Any]:
    """The answer: counts and one entry per data row, by line."""
    by_line = {step.row.line: step for step in steps}
    entries = []
    for row in rows:
        step = by_line.get(row.line)
        if step is None:
            existing = state.offerings.get((row.provider_id or "", row.external_id or ""))
            entry = {"line": row.line, "status": "rejected", "offering_id": existing and existing["id"]}
            entries.append({**entry, "errors": row.errors})
        else:
            entries.append({"line": row.line, "status": step.status, "offering_id": step.offering_id, "errors": []})
    counts = {status: sum(1 for e in entries if e["status"] == status) for status in ("created", "updated")}
    counts["unchanged"] = sum(1 for e in entries if e["status"] == "unchanged")
    counts["rejected"] = sum(1 for e in entries if e["status"] == "rejected")
    return {**counts, "dry_run": dry_run, "rows": entries}
