"""Reports of a small network, figure by figure; plus the scenario the other reporting tests replay.

The scenario (academic year 2026-2027 unless said):
- sakky (Pohjois-Savo; first registered as `Savo`), kao (Pohjois-Karjala), edupoli (outside, Uusimaa);
- O1 Funktiot by sakky (mathematics, 3.0 cr, seats 3 → 4 by an update, min 2, starts 2026-09);
  O2 Mekaniikka by kao (physics, seats 2, min 3: under its minimum, starts 2027-01);
  O3 Ruotsi by sakky (swedish, cancelled); O4 Funktiot II by sakky in 2027-2028;
- enrolments through every status, commitments through every status, two invoices and a credit note.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.ext.asyncio import AsyncEngine

from services.reporting import tables, views
from services.reporting.consumers import SUBSCRIPTIONS
from shared.db import make_engine
from shared.errors import NotFound
from shared.events import (
    CommitmentAccepted,
    CommitmentChargeable,
    CommitmentCreated,
    CommitmentRejected,
    CommitmentVoided,
    CreditNoteIssued,
    EnrolmentCancelled,
    EnrolmentCompleted,
    EnrolmentConfirmed,
    EnrolmentRejected,
    EnrolmentRequested,
    EnrolmentWaitlisted,
    EnrolmentWithdrawn,
    Envelope,
    EventData,
    InstitutionRegistered,
    InstitutionUpdated,
    InvoiceIssued,
    LocalizedText,
    OfferingCancelled,
    OfferingPublished,
    OfferingUpdated,
    PricingGuidelineSet,
    new_event,
)
from shared.http import Page
from shared.migrate import alembic_config
from tests.support.infra import ROOT, database, migrate, migrated_engine

pytestmark = pytest.mark.integration
YEAR = "2026-2027"
START = datetime(2026, 8, 10, 8, 0, tzinfo=UTC)
PRICE = {"sakky": Decimal("120.00"), "kao": Decimal("80.00")}


class Network:
    """Builds envelopes the way the services publish them: per-aggregate sequences, increasing times."""

    def __init__(self) -> None:
        self.events: list[Envelope] = []
        self.versions: dict[str, int] = defaultdict(int)
        self.offerings: dict[str, dict[str, Any]] = {}
        self.enrolments: dict[str, dict[str, Any]] = {}
        self.commitments: dict[str, dict[str, Any]] = {}
        self.clock = START

    def emit(
        self, data: EventData, subject: str, source: str, *, sequence: int | None = None, at: datetime | None = None
    ) -> Envelope:
        if sequence is None:
            self.versions[subject] += 1
            sequence = self.versions[subject]
        else:
            self.versions[subject] = max(self.versions[subject], sequence)
        self.clock = at or self.clock + timedelta(minutes=7)
        event = new_event(data, source=source, subject=subject, sequence=sequence, correlation_id=f"c-{subject}")
        event = event.model_copy(update={"time": self.clock})
        self.events.append(event)
        return event

    # catalogue

    def institution(self, slug: str, *, member: bool = True, region: str | None = None, update: bool = False) -> None:
        model = InstitutionUpdated if update else InstitutionRegistered
        data = model(
            institution_id=slug, names=LocalizedText(fi=slug.upper()), kind="vocational", member=member, region=region
        )
        self.emit(data, slug, "catalogue")

    def offering_data(self, oid: str, **changes: Any) -> dict[str, Any]:
        base = self.offerings.get(oid, {})
        data = {**base, **changes}
        self.offerings[oid] = data
        return data

    def publish(
        self,
        oid: str,
        provider: str,
        title: str,
        subject: str,
        *,
        seats: int,
        minimum: int,
        start: date,
        credits: str = "3.0",
        year: str = YEAR,
    ) -> None:
        data = self.offering_data(
            oid,
            offering_id=oid,
            course_id=f"course-{oid}",
            provider_id=provider,
            titles=LocalizedText(fi=title),
            subject=subject,
            level="upper_secondary",
            credits=credits,
            languages=["fi"],
            delivery_mode="online_self_paced",
            academic_year=year,
            start_date=start,
            end_date=start + timedelta(days=60),
            enrolment_opens=start - timedelta(days=40),
            enrolment_closes=start - timedelta(days=5),
            min_participants=minimum,
            max_participants=seats,
            member_price=PRICE.get(provider, Decimal("80.00")),
            external_price=Decimal("150.00"),
            free_cancellation_deadline=start + timedelta(days=14),
        )
        self.versions[oid] = max(self.versions[oid], 1)  # the draft was version 1
        self.emit(OfferingPublished(**data), oid, "catalogue")

    def update_offering(self, oid: str, **changes: Any) -> None:
        self.emit(OfferingUpdated(**self.offering_data(oid, **changes), status="published"), oid, "catalogue")

    def cancel_offering(self, oid: str) -> None:
        provider = self.offerings[oid]["provider_id"]
        self.emit(OfferingCancelled(offering_id=oid, provider_id=provider, reason="too few"), oid, "catalogue")

    # enrolment

    def facts(self, eid: str) -> dict[str, Any]:
        return self.enrolments[eid]

    def enrol(self, eid: str, oid: str, home: str, *, waitlisted: bool = False) -> None:
        offering = self.offerings[oid]
        self.enrolments[eid] = {
            "enrolment_id": eid,
            "offering_id": oid,
            "provider_id": offering["provider_id"],
            "home_institution_id": home,
            "student_ref": f"ref-{eid}",
            "academic_year": offering["academic_year"],
        }
        if waitlisted:
            self.emit(EnrolmentWaitlisted(**self.facts(eid), waitlist_position=1), eid, "enrolment")
        else:
            self.requested(eid)

    def requested(self, eid: str) -> None:
        prices = {k: self.offerings[self.facts(eid)["offering_id"]][k] for k in ("member_price", "external_price")}
        self.emit(EnrolmentRequested(**self.facts(eid), **prices), eid, "enrolment")

    def confirm(self, eid: str) -> None:
        self.emit(EnrolmentConfirmed(**self.facts(eid)), eid, "enrolment")

    def reject(self, eid: str) -> None:
        self.emit(EnrolmentRejected(**self.facts(eid), reason="budget"), eid, "enrolment")

    def withdraw(self, eid: str, *, late: bool, was_waitlisted: bool = False) -> None:
        percent = Decimal(50) if late else Decimal(0)
        data = EnrolmentWithdrawn(**self.facts(eid), late=late, charge_percent=percent, was_waitlisted=was_waitlisted)
        self.emit(data, eid, "enrolment")

    def cancel(self, eid: str) -> None:
        self.emit(EnrolmentCancelled(**self.facts(eid), reason="offering cancelled"), eid, "enrolment")

    def complete(self, eid: str, outcome: str, credits: str | None = None, grade: str | None = None) -> None:
        data = EnrolmentCompleted(
            **self.facts(eid), outcome=outcome, grade=grade, credits_earned=credits, charge_percent=Decimal(100)
        )
        self.emit(data, eid, "enrolment")

    # billing

    def commit(self, cid: str, eid: str, amount: str) -> None:
        e = self.facts(eid)
        self.commitments[cid] = {
            "commitment_id": cid,
            "enrolment_id": eid,
            "offering_id": e["offering_id"],
            "payer_id": e["home_institution_id"],
            "payee_id": e["provider_id"],
            "amount": Decimal(amount),
            "academic_year": e["academic_year"],
        }
        kind = "member" if amount != "150.00" and amount != "100.00" else "external"
        self.emit(CommitmentCreated(**self.commitments[cid], price_kind=kind, status="pending"), cid, "billing")

    def accept(self, cid: str) -> None:
        self.emit(CommitmentAccepted(**self.commitments[cid], decided_by="automatic"), cid, "billing")

    def reject_commitment(self, cid: str) -> None:
        self.emit(CommitmentRejected(**self.commitments[cid], reason="no budget"), cid, "billing")

    def void(self, cid: str) -> None:
        self.emit(CommitmentVoided(**self.commitments[cid], reason="free withdrawal"), cid, "billing")

    def chargeable(self, cid: str, amount: str) -> None:
        data = CommitmentChargeable(**self.commitments[cid], chargeable_amount=Decimal(amount), reason="result")
        self.emit(data, cid, "billing")

    def invoice(self, iid: str, payee: str, payer: str, total: str, cids: list[str], at: datetime) -> None:
        data = InvoiceIssued(
            invoice_id=iid,
            number=f"{payee}-{iid}",
            payee_id=payee,
            payer_id=payer,
            period_start=date(at.year, at.month, 1) - timedelta(days=40),
            period_end=date(at.year, at.month, 1) - timedelta(days=1),
            total=Decimal(total),
            commitment_ids=cids,
        )
        self.emit(data, iid, "billing", at=at)

    def credit_note(
        self, nid: str, iid: str, payee: str, payer: str, total: str, cids: list[str], at: datetime
    ) -> None:
        data = CreditNoteIssued(
            credit_note_id=nid,
            number=f"{payee}-{nid}",
            invoice_id=iid,
            payee_id=payee,
            payer_id=payer,
            total=Decimal(total),
            commitment_ids=cids,
        )
        self.emit(data, nid, "billing", at=at)


def scenario() -> Network:
    n = Network()
    n.institution("sakky", region="Savo")
    n.institution("kao", region="Pohjois-Karjala")
    n.institution("edupoli", member=False, region="Uusimaa")
    n.institution("sakky", region="Pohjois-Savo", update=True)
    guideline = PricingGuidelineSet(
        academic_year=YEAR,
        price_per_credit=Decimal("40.00"),
        external_surcharge_percent=Decimal(25),
        late_withdrawal_percent=Decimal(50),
        free_cancellation_days=14,
    )
    n.emit(guideline, YEAR, "catalogue")
    n.publish("O1", "sakky", "Funktiot", "mathematics", seats=3, minimum=2, start=date(2026, 9, 1))
    n.update_offering("O1", max_participants=4)
    n.publish("O2", "kao", "Mekaniikka", "physics", seats=2, minimum=3, start=date(2027, 1, 11), credits="2.0")
    n.publish("O3", "sakky", "Ruotsi", "swedish", seats=10, minimum=1, start=date(2026, 10, 5), credits="2.0")
    n.publish("O4", "sakky", "Funktiot II", "mathematics", seats=5, minimum=1, start=date(2027, 9, 1), year="2027-2028")

    for eid, home in (("e1", "kao"), ("e2", "edupoli"), ("e3", "kao"), ("e4", "kao"), ("e5", "sakky")):
        n.enrol(eid, "O1", home)
        n.confirm(eid)
    n.complete("e1", "passed", credits="3.0", grade="9")
    n.complete("e2", "failed", grade="4")
    n.complete("e3", "interrupted")
    n.withdraw("e4", late=True)
    n.enrol("e6", "O1", "kao")
    n.reject("e6")
    n.enrol("e7", "O1", "edupoli", waitlisted=True)
    n.requested("e7")  # promoted from the waitlist
    n.enrol("e8", "O1", "kao", waitlisted=True)
    n.enrol("e9", "O1", "kao", waitlisted=True)
    n.withdraw("e9", late=False, was_waitlisted=True)
    n.enrol("e10", "O2", "sakky")
    n.confirm("e10")
    n.enrol("e11", "O2", "edupoli")
    n.enrol("e12", "O3", "kao")
    n.confirm("e12")
    n.cancel_offering("O3")
    n.cancel("e12")
    n.enrol("e13", "O4", "kao")

    for cid, eid, amount in (("c1", "e1", "120.00"), ("c2", "e2", "150.00"), ("c3", "e3", "120.00")):
        n.commit(cid, eid, amount)
        n.accept(cid)
        n.chargeable(cid, amount)
    n.commit("c4", "e4", "120.00")
    n.accept("c4")
    n.chargeable("c4", "60.00")
    n.commit("c5", "e5", "120.00")
    n.accept("c5")
    n.commit("c6", "e6", "120.00")
    n.reject_commitment("c6")
    n.commit("c7", "e7", "150.00")
    n.commit("c10", "e10", "80.00")
    n.accept("c10")
    n.commit("c11", "e11", "100.00")
    n.commit("c12", "e12", "80.00")
    n.accept("c12")
    n.void("c12")
    n.commit("c13", "e13", "80.00")
    n.accept("c13")
    n.invoice("inv1", "sakky", "kao", "300.00", ["c1", "c3", "c4"], at=datetime(2026, 10, 15, 10, 0, tzinfo=UTC))
    n.invoice("inv2", "sakky", "edupoli", "150.00", ["c2"], at=datetime(2026, 12, 1, 9, 0, tzinfo=UTC))
    n.void("c4")  # voided after it was invoiced: credited back
    n.credit_note("cn1", "inv1", "sakky", "kao", "60.00", ["c4"], at=datetime(2027, 1, 5, 12, 0, tzinfo=UTC))
    return n


async def feed(engine: AsyncEngine, events: list[Envelope]) -> None:
    """The live path: the reporting queue's one handler, one transaction per event."""
    handler = SUBSCRIPTIONS["#"]
    for event in events:
        async with engine.begin() as conn:
            await handler(conn, event)


ALL = Page(page=1, page_size=500)


async def all_reports(engine: AsyncEngine, homes: tuple[str, ...] = ("sakky", "kao", "edupoli")) -> dict[str, Any]:
    """Every report's JSON, under the filters and groupings the tests compare."""
    out: dict[str, Any] = {}
    async with engine.connect() as conn:
        for year in (None, YEAR):
            f = views.Filters(academic_year=year)
            out[f"participants/{year}"] = (await views.participants(conn, f, "offering", ALL)).body
            out[f"participants-home/{year}"] = (await views.participants(conn, f, "home_institution", ALL)).body
            for group in views.COMPLETION_GROUPS:
                out[f"completions/{group}/{year}"] = (await views.completions(conn, f, group, ALL)).body
            for provider, home in (("sakky", None), (None, "kao"), ("sakky", "kao")):
                narrowed = views.Filters(academic_year=year, provider=provider, home_institution=home)
                for group in ("provider", "home_institution", "academic_year"):
                    key = f"completions/{group}/{year}/{provider}/{home}"
                    out[key] = (await views.completions(conn, narrowed, group, ALL)).body
            out[f"billing/{year}"] = (await views.billing(conn, f, None, None, None, ALL)).body
            out[f"billing/kao/{year}"] = (await views.billing(conn, f, "kao", None, None, ALL)).body
            out[f"supply-demand/{year}"] = (await views.supply_demand(conn, f, None, ALL)).body
            out[f"supply-demand-period/{year}"] = (await views.supply_demand(conn, f, "period,region", ALL)).body
            for home in homes:
                try:
                    out[f"follow-up/{home}/{year}"] = (await views.follow_up(conn, home, f, ALL)).body
                except NotFound as unknown:
                    out[f"follow-up/{home}/{year}"] = unknown.message
        kao = views.Filters(academic_year=YEAR, home_institution="kao")
        out["participants/kao"] = (await views.participants(conn, kao, "offering", ALL)).body
        out["billing/kao/period"] = (
            await views.billing(conn, views.Filters(), "kao", date(2026, 10, 1), date(2026, 12, 31), ALL)
        ).body
    return out


def reporting_engine(kind: str, tmp_path: Path, name: str) -> contextlib.AbstractAsyncContextManager[AsyncEngine]:
    """An engine on a fresh, migrated reporting database (dropped afterwards)."""
    return migrated_engine("reporting", kind, tmp_path, name)


@pytest.fixture
async def engine(db_kind: str, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    async with reporting_engine(db_kind, tmp_path, "reporting") as engine:
        yield engine


def by(items: list[dict[str, Any]], key: str) -> dict[Any, dict[str, Any]]:
    return {item[key]: item for item in items}


async def test_participants_per_offering_count_each_enrolment_once_by_its_newest_status(engine: AsyncEngine) -> None:
    await feed(engine, scenario().events)
    async with engine.connect() as conn:
        report = (await views.participants(conn, views.Filters(academic_year=YEAR), "offering", ALL)).body
    items = by(report["items"], "offering_id")
    assert set(items) == {"O1", "O2", "O3"}
    o1 = items["O1"]
    assert (o1["title"], o1["provider_id"], o1["seats"], o1["status"]) == ("Funktiot", "sakky", 4, "published")
    counts = {k: o1[k] for k in ("held", "awaiting_commitment", "confirmed", "waitlisted", "rejected", "withdrawn")}
    assert counts == {
        "held": 5,  # 1 awaiting + 1 confirmed + 3 with a result: a recorded result keeps its seat
        "awaiting_commitment": 1,
        "confirmed": 1,
        "waitlisted": 1,
        "rejected": 1,
        "withdrawn": 2,
    }
    assert (o1["withdrawn_late"], o1["cancelled"], o1["completed"], o1["requests"]) == (1, 0, 3, 9)
    assert o1["by_home_institution"]["kao"]["withdrawn"] == 2
    assert o1["by_home_institution"]["kao"]["completed"] == 2
    assert o1["by_home_institution"]["edupoli"] == {
        "held": 2,  # one awaiting, one with a result
        "awaiting_commitment": 1,
        "confirmed": 0,
        "waitlisted": 0,
        "rejected": 0,
        "withdrawn": 0,
        "withdrawn_late": 0,
        "cancelled": 0,
        "completed": 1,
    }
    assert (items["O2"]["held"], items["O2"]["seats"]) == (2, 2)
    assert (items["O3"]["status"], items["O3"]["cancelled"], items["O3"]["held"]) == ("cancelled", 1, 0)
    totals = report["totals"]
    assert (totals["held"], totals["waitlisted"], totals["cancelled"], totals["completed"], totals["requests"]) == (
        7,  # 4 awaiting or confirmed + 3 with a result
        1,
        1,
        3,
        12,
    )
    assert report["total"] == 3


async def test_participants_by_home_institution_count_only_students_in_other_institutions_courses(
    engine: AsyncEngine,
) -> None:
    await feed(engine, scenario().events)
    async with engine.connect() as conn:
        report = (await views.participants(conn, views.Filters(academic_year=YEAR), "home_institution", ALL)).body
        only_kao = (
            await views.participants(conn, views.Filters(academic_year=YEAR, home_institution="kao"), "offering", ALL)
        ).body
    homes = by(report["items"], "home_institution_id")
    assert homes["sakky"]["held"] == 1 and homes["sakky"]["requests"] == 1  # own O1 student not counted
    assert (homes["kao"]["requests"], homes["kao"]["cancelled"], homes["kao"]["withdrawn_late"]) == (7, 1, 1)
    assert homes["kao"]["name"] == "KAO"
    assert (homes["edupoli"]["held"], homes["edupoli"]["providers"], homes["edupoli"]["completed"]) == (3, 2, 1)
    # with a home filter: kao's students only, its own course O2 included (none of them there)
    assert [i["offering_id"] for i in only_kao["items"]] == ["O1", "O3"]
    assert list(only_kao["items"][0]["by_home_institution"]) == ["kao"]


async def test_completions_rate_and_credits_per_grouping(engine: AsyncEngine) -> None:
    await feed(engine, scenario().events)
    async with engine.connect() as conn:
        year = views.Filters(academic_year=YEAR)
        per_offering = by((await views.completions(conn, year, "offering", ALL)).body["items"], "offering_id")
        per_home = by(
            (await views.completions(conn, year, "home_institution", ALL)).body["items"], "home_institution_id"
        )
        per_subject = by((await views.completions(conn, year, "subject", ALL)).body["items"], "subject")
        per_year = await views.completions(conn, views.Filters(), "academic_year", ALL)
    o1 = per_offering["O1"]
    assert (o1["passed"], o1["failed"], o1["interrupted"], o1["completion_rate"], o1["credits_earned"]) == (
        1,
        1,
        1,
        "0.3333",
        "3.0",
    )
    assert per_offering["O2"]["completion_rate"] is None and per_offering["O2"]["credits_earned"] == "0.0"
    assert per_home["kao"]["completion_rate"] == "0.5000" and per_home["kao"]["credits_earned"] == "3.0"
    assert per_home["edupoli"]["completion_rate"] == "0.0000"
    assert per_subject["mathematics"]["completed"] == 3
    assert set(per_subject) == {"mathematics", "physics", "swedish"}
    years = by(per_year.body["items"], "academic_year")
    assert years["2027-2028"]["enrolments"] == 1 and years["2027-2028"]["completion_rate"] is None
    assert per_year.body["totals"]["completion_rate"] == "0.3333"


async def test_completions_read_one_row_groups_as_they_are_with_the_figures_grouping_gives(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where each group is one counter row (per offering; per home institution with the year and provider
    fixed) the report reads the rows without grouping them: the same answer, page by page, as grouping."""
    network = scenario()
    network.publish("O5", "kao", "Optiikka", "physics", seats=4, minimum=1, start=date(2026, 11, 2))  # nobody
    await feed(engine, network.events)
    cases = [
        ("offering", views.Filters(academic_year=YEAR)),
        ("offering", views.Filters()),
        ("offering", views.Filters(academic_year=YEAR, home_institution="kao")),
        ("offering", views.Filters(provider="sakky")),
        ("home_institution", views.Filters(academic_year=YEAR, provider="sakky")),
        ("provider", views.Filters(academic_year=YEAR, home_institution="edupoli")),
    ]
    pages = (ALL, Page(page=1, page_size=1), Page(page=2, page_size=1), Page(page=9, page_size=1))

    async def answers() -> list[Any]:
        async with engine.connect() as conn:
            return [(await views.completions(conn, f, group, page)).body for group, f in cases for page in pages]

    taken: list[bool] = []
    real = views._one_row_per_key

    def spy(*args: Any) -> bool:
        taken.append(real(*args))
        return taken[-1]

    monkeypatch.setattr(views, "_one_row_per_key", spy)
    read = await answers()
    assert all(taken) and len(taken) == len(cases) * len(pages)
    monkeypatch.setattr(views, "_one_row_per_key", lambda *a: False)
    assert read == await answers()
    assert read[0]["items"] and read[0]["totals"]["enrolments"] > 0
    assert "O5" not in {item["offering_id"] for item in read[0]["items"]}  # no enrolment: not a completion line


def test_only_a_counter_table_keyed_by_the_group_alone_is_read_without_grouping() -> None:
    year = views.Filters(academic_year=YEAR)
    assert views._one_row_per_key(tables.offering_counts, "offering_id", views.Filters())
    assert not views._one_row_per_key(tables.offering_home_counts, "offering_id", year)
    assert views._one_row_per_key(tables.offering_home_counts, "offering_id", views.Filters(home_institution="kao"))
    assert not views._one_row_per_key(tables.home_provider_counts, "home_institution_id", year)
    assert views._one_row_per_key(tables.provider_counts, "provider_id", year)
    assert not views._one_row_per_key(tables.provider_counts, "academic_year", views.Filters())
    scoped = views._counter_source(offering=True, home=False, provider=True, scope="kao")
    assert not views._one_row_per_key(scoped, "offering_id", year)


def test_reports_per_institution_or_year_read_the_roll_ups_and_pairs_only_when_both_are_needed() -> None:
    table = views._counter_table
    assert table(offering=False, home=False, provider=True) is tables.provider_counts
    assert table(offering=False, home=False, provider=False) is tables.provider_counts  # per year
    assert table(offering=False, home=True, provider=False) is tables.home_counts
    assert table(offering=False, home=True, provider=True) is tables.home_provider_counts
    assert table(offering=True, home=False, provider=False) is tables.offering_counts
    # scoped to an institution: always the pairs, whatever the grouping
    scoped = views._counter_source(offering=False, home=False, provider=True, scope="kao")
    assert "home_institution_id" in scoped.c and "provider_id" in scoped.c


async def test_billing_per_institution_as_provider_and_as_home_to_the_cent(engine: AsyncEngine) -> None:
    await feed(engine, scenario().events)
    async with engine.connect() as conn:
        report = (await views.billing(conn, views.Filters(academic_year=YEAR), None, None, None, ALL)).body
        every_year = (await views.billing(conn, views.Filters(), None, None, None, ALL)).body
        autumn = (await views.billing(conn, views.Filters(), None, date(2026, 11, 1), date(2026, 12, 31), ALL)).body
        only_kao = (await views.billing(conn, views.Filters(academic_year=YEAR), "kao", None, None, ALL)).body
    lines = by(report["items"], "institution_id")
    sakky = lines["sakky"]["as_provider"]
    assert (sakky["committed"], sakky["committed_count"], sakky["chargeable"], sakky["chargeable_count"]) == (
        "510.00",
        4,
        "390.00",
        3,
    )
    assert (sakky["voided"], sakky["voided_count"], sakky["pending"], sakky["rejected_count"]) == (
        "200.00",
        2,
        "150.00",
        1,
    )
    assert (sakky["invoiced"], sakky["invoice_count"], sakky["credited"], sakky["credit_note_count"]) == (
        "450.00",
        2,
        "60.00",
        1,
    )
    assert lines["sakky"]["as_home"]["committed"] == "200.00"
    kao_home = lines["kao"]["as_home"]
    assert (kao_home["committed"], kao_home["chargeable"], kao_home["voided"], kao_home["invoiced"]) == (
        "240.00",
        "240.00",
        "200.00",
        "300.00",
    )
    assert kao_home["credited"] == "60.00"
    assert lines["kao"]["as_provider"]["committed"] == "80.00" and lines["kao"]["as_provider"]["pending"] == "100.00"
    edupoli = lines["edupoli"]
    assert edupoli["as_home"]["pending"] == "250.00" and edupoli["as_home"]["invoiced"] == "150.00"
    assert edupoli["as_provider"]["committed"] == "0.00"
    assert report["totals"]["committed"] == "590.00" and report["totals"]["invoiced"] == "450.00"
    assert every_year["totals"]["committed"] == "670.00"
    autumn_lines = by(autumn["items"], "institution_id")
    assert autumn_lines["sakky"]["as_provider"]["invoiced"] == "150.00"
    assert autumn_lines["sakky"]["as_provider"]["credited"] == "0.00"
    assert autumn["totals"]["invoice_count"] == 1
    # one institution: its own line, and totals over the commitments and documents it is a party to
    assert [item["institution_id"] for item in only_kao["items"]] == ["kao"]
    assert only_kao["items"][0] == lines["kao"]
    kao_totals = only_kao["totals"]
    assert (kao_totals["commitments"], kao_totals["committed"], kao_totals["invoiced"], kao_totals["credited"]) == (
        7,
        "320.00",
        "300.00",
        "60.00",
    )


async def _rollups_and_their_sums(engine: AsyncEngine) -> dict[str, tuple[list[Any], list[Any]]]:
    """Per roll-up table: its rows, and the rows its query derives from the pair tables (both sorted)."""
    out = {}
    async with engine.connect() as conn:
        for table, query in tables.ROLLUPS.items():
            held = sorted(tuple(row) for row in await conn.execute(sa.select(table)))
            rows = await conn.execute(query)  # PostgreSQL's sum of bigints is a numeric
            derived = sorted(tuple(int(v) if isinstance(v, Decimal) else v for v in row) for row in rows)
            out[table.name] = (held, derived)
    return out


async def test_the_projections_keep_each_roll_up_the_sum_of_its_pair_tables(engine: AsyncEngine) -> None:
    events = scenario().events
    await feed(engine, events[: len(events) // 2])
    async with engine.begin() as conn:  # the rest as one consumer batch: the deltas summed per row at commit
        for event in events[len(events) // 2 :]:
            await SUBSCRIPTIONS["#"](conn, event)
    found = await _rollups_and_their_sums(engine)
    for name, (held, derived) in found.items():
        assert held == derived, name
    assert {name: len(held) for name, (held, _) in found.items()} == {
        "provider_counts": 3,  # sakky and kao in 2026-2027, sakky in 2027-2028
        "home_counts": 4,
        "institution_billing_counts": 7,  # 2026-2027: edupoli as payer only, kao and sakky both ways; 2027-2028: two
    }
    # the statements that fill them from the pairs (the bench's seeder) give the same rows
    async with engine.begin() as conn:
        for table in tables.ROLLUPS:
            await conn.execute(table.delete())
        for statement in tables.fill_rollups():
            await conn.execute(statement)
    assert await _rollups_and_their_sums(engine) == found


async def test_the_migration_that_adds_the_roll_ups_fills_them_from_the_pairs(db_kind: str, tmp_path: Path) -> None:
    async with database(db_kind, tmp_path, "rollups") as url:
        await migrate("reporting", url)
        engine = make_engine(url)
        try:
            await feed(engine, scenario().events)
            projected = await _rollups_and_their_sums(engine)
            config = alembic_config(ROOT / "services" / "reporting" / "migrations", url)
            await asyncio.to_thread(command.downgrade, config, "0003")
            await asyncio.to_thread(command.upgrade, config, "head")
            assert await _rollups_and_their_sums(engine) == projected
            assert all(held for held, _ in projected.values())
        finally:
            await engine.dispose()


async def test_supply_and_demand_by_subject_level_region_and_period(engine: AsyncEngine) -> None:
    await feed(engine, scenario().events)
    async with engine.connect() as conn:
        report = (await views.supply_demand(conn, views.Filters(academic_year=YEAR), None, ALL)).body
        periods = (await views.supply_demand(conn, views.Filters(academic_year=YEAR), "period", ALL)).body
        savo = (await views.supply_demand(conn, views.Filters(region="Pohjois-Savo"), "region", ALL)).body
    lines = by(report["items"], "subject")
    maths = lines["mathematics"]
    assert (maths["level"], maths["region"], maths["academic_year"]) == ("upper_secondary", "Pohjois-Savo", YEAR)
    assert (maths["offerings"], maths["seats"], maths["requests"], maths["held"], maths["fill_rate"]) == (
        1,
        4,
        9,
        5,  # results keep their seats; this hand-made scenario records more results than seats
        "1.2500",
    )
    assert (maths["waitlisted"], maths["under_minimum"]) == (1, 0)
    physics = lines["physics"]
    assert (physics["region"], physics["fill_rate"], physics["under_minimum"]) == ("Pohjois-Karjala", "1.0000", 1)
    swedish = lines["swedish"]
    assert (swedish["offerings"], swedish["seats"], swedish["requests"], swedish["cancelled_offerings"]) == (0, 0, 1, 1)
    assert swedish["fill_rate"] is None
    totals = report["totals"]
    assert (totals["offerings"], totals["seats"], totals["held"], totals["fill_rate"], totals["under_minimum"]) == (
        2,
        6,
        7,
        "1.1667",
        1,
    )
    assert [p["period"] for p in periods["items"]] == ["2026-09", "2026-10", "2027-01"]
    assert [(s["region"], s["offerings"], s["seats"]) for s in savo["items"]] == [("Pohjois-Savo", 2, 9)]


async def test_supply_and_demand_binds_only_what_the_caller_gave(engine: AsyncEngine) -> None:
    """Its constants are written into the statement: the totals' windows repeat every measure, and the
    database computes a repeated aggregate once only when both are the same expression, which two bound
    parameters never are."""
    await feed(engine, scenario().events)
    bound: list[Any] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        if "offering_counts" in statement:
            bound.extend(parameters.values() if isinstance(parameters, dict) else parameters)

    sa.event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        async with engine.connect() as conn:
            f = views.Filters(academic_year=YEAR)
            report = (await views.supply_demand(conn, f, None, Page(page=1, page_size=7))).body
    finally:
        sa.event.remove(engine.sync_engine, "before_cursor_execute", record)
    assert report["totals"]["held"] == 7 and report["items"]
    # the year; the four grouping columns' NULL stand-in in ORDER BY; LIMIT and OFFSET
    assert sorted(map(str, bound)) == sorted([YEAR, "", "", "", "", "7", "0"])


def test_only_plain_words_are_written_into_a_statement() -> None:
    assert str(views._text_constant("cancelled")) == "'cancelled'"
    for word in ("it's", "closed' OR '1'='1", "Published", ""):
        with pytest.raises(ValueError, match="not a plain word"):
            views._text_constant(word)


async def test_a_follow_up_page_comes_in_the_index_order_with_nothing_to_sort(engine: AsyncEngine) -> None:
    """With sorting made as dear as the planner allows, the plan still has no sort: the index gives the order
    (without the enrolment id in it, PostgreSQL read every row tied with the page's last; SQLite sorted)."""
    query, _ = views.follow_up_list("kao", views.Filters(academic_year=YEAR))
    sql = str(query.limit(50).offset(50).compile(engine.sync_engine, compile_kwargs={"literal_binds": True}))
    async with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            await conn.exec_driver_sql("SET enable_sort = off")
            await conn.exec_driver_sql("SET enable_seqscan = off")
            plan = "\n".join(row[0] for row in await conn.exec_driver_sql(f"EXPLAIN {sql}"))
            assert "Sort" not in plan and "ix_enrolment_states_follow_up" in plan, plan
        else:
            plan = "\n".join(row[-1] for row in await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))
            assert "TEMP B-TREE" not in plan and "ix_enrolment_states_follow_up" in plan, plan


async def test_follow_up_lists_failed_interrupted_and_late_withdrawn_students_pseudonymously(
    engine: AsyncEngine,
) -> None:
    await feed(engine, scenario().events)
    async with engine.connect() as conn:
        kao = (await views.follow_up(conn, "kao", views.Filters(academic_year=YEAR), ALL)).body
        edupoli = (await views.follow_up(conn, "edupoli", views.Filters(), ALL)).body
        sakky = (await views.follow_up(conn, "sakky", views.Filters(), ALL)).body
    assert [(i["enrolment_id"], i["reason"]) for i in kao["items"]] == [
        ("e4", "late_withdrawal"),
        ("e3", "interrupted"),
    ]
    e3 = kao["items"][1]
    assert (e3["student_ref"], e3["offering_title"], e3["provider_id"], e3["status"]) == (
        "ref-e3",
        "Funktiot",
        "sakky",
        "interrupted",
    )
    assert e3["enrolment_url"] == "/api/enrolments/e3" and "/api/enrolments/" in kao["personal_data"]
    assert [(i["enrolment_id"], i["grade"]) for i in edupoli["items"]] == [("e2", "4")]
    assert sakky["items"] == [] and sakky["total"] == 0
    assert set(e3) == {
        "enrolment_id",
        "student_ref",
        "offering_id",
        "offering_title",
        "provider_id",
        "academic_year",
        "status",
        "reason",
        "late",
        "grade",
        "date",
        "enrolment_url",
    }
