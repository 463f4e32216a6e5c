"""The demo data set (`scripts/demo_data.py`): what `make run` loads, and the story it plays, fit the services' rules.

No network: the data is checked against the services' own pure rules (catalogue plan rules, enrolment windows and
withdrawals, billing policies and budgets).
"""

from __future__ import annotations

import sys
from collections import Counter
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import demo_data  # scripts/ is no package: imported as scripts/demo.py does

from services.billing import domain as billing
from services.catalogue import domain as catalogue
from services.enrolment import domain as enrolment

TODAY = date(2026, 11, 23)
# Ordinary days and the edges of academic years (1 Aug – 31 Jul), where offerings spread over two years.
DAYS = (TODAY, date(2027, 7, 20), date(2027, 8, 1), date(2028, 2, 29), date(2026, 1, 5))
MEMBERS = {"sakky", "ekami", "kao", "samiedu", "pkky", "esedu", "ysao", "kuopion-lyseo"}
OUTSIDE = "edupoli"


@pytest.fixture(scope="module")
def data() -> demo_data.DemoData:
    return demo_data.build(TODAY)


@pytest.fixture(scope="module")
def story(data: demo_data.DemoData) -> demo_data.Story:
    assert data.story is not None
    return data.story


def day(text: str) -> date:
    return date.fromisoformat(text)


def plan_of(offering: demo_data.Item) -> catalogue.OfferingPlan:
    return catalogue.OfferingPlan(
        start_date=day(offering["start_date"]),
        end_date=day(offering["end_date"]),
        enrolment_opens=day(offering["enrolment_opens"]),
        enrolment_closes=day(offering["enrolment_closes"]),
        min_participants=offering["min_participants"],
        max_participants=offering["max_participants"],
    )


def deadline_of(offering: demo_data.Item) -> date:
    """The free-cancellation deadline the catalogue gives the offering (its own, or start + guideline days)."""
    own = offering.get("free_cancellation_deadline")
    guideline = catalogue.Guideline(
        price_per_credit=Decimal(demo_data.GUIDELINE["price_per_credit"]),
        external_surcharge_percent=Decimal(demo_data.GUIDELINE["external_surcharge_percent"]),
        free_cancellation_days=demo_data.GUIDELINE["free_cancellation_days"],
    )
    return catalogue.free_cancellation_deadline(day(offering["start_date"]), guideline, day(own) if own else None)


def year_of(offering: demo_data.Item) -> str:
    return catalogue.academic_year_of(day(offering["start_date"]))


# --- institutions, courses, offerings -----------------------------------------------------------------------------


def test_the_named_members_and_the_outside_institution_exist(data: demo_data.DemoData) -> None:
    by_id = {i["id"]: i for i in data.institutions}
    assert len(by_id) == len(data.institutions), "institution ids repeat"
    assert set(by_id) == MEMBERS | {OUTSIDE}
    assert {i for i, item in by_id.items() if not item["member"]} == {OUTSIDE}
    for item in data.institutions:
        assert all(item["names"].get(lang) for lang in ("fi", "sv", "en")), item["id"]
        digits, check = item["business_id"].split("-")
        assert demo_data.business_id(digits) == item["business_id"], f"{item['id']}: bad check digit {check}"


def test_there_are_over_two_hundred_offerings_of_known_courses(data: demo_data.DemoData) -> None:
    course_keys = {c["key"] for c in data.courses}
    assert len(data.offerings) >= 200
    assert len({o["key"] for o in data.offerings}) == len(data.offerings), "offering keys repeat"
    assert all(o["course_id"] in course_keys for o in data.offerings)
    assert len({(c["provider_id"], c["code"]) for c in data.courses}) == len(data.courses), "a provider's code repeats"


def test_titles_come_in_finnish_swedish_and_english(data: demo_data.DemoData) -> None:
    languages = Counter(lang for course in data.courses for lang, text in course["titles"].items() if text)
    assert all(course["titles"].get("fi") for course in data.courses), "every course has a Finnish title"
    assert languages["sv"] >= 50
    assert languages["en"] >= 50
    assert languages["sv"] < len(data.courses), "some courses are in Finnish only, as in a real network"
    for course in data.courses:
        assert set(course["descriptions"]) == set(course["titles"]), course["key"]


@pytest.mark.parametrize("today", DAYS, ids=str)
def test_every_offering_passes_the_catalogue_plan_rules(today: date) -> None:
    data = demo_data.build(today)
    for offering in data.offerings:
        catalogue.check_offering_plan(plan_of(offering))  # raises Invalid with the catalogue's message
        assert year_of(offering) in data.guidelines, f"{offering['key']}: no pricing guideline for its year"


@pytest.mark.parametrize("today", DAYS, ids=str)
def test_every_enrolment_is_in_an_offering_open_today(today: date) -> None:
    data = demo_data.build(today)
    assert data.story is not None
    for item in [*data.enrolments, *data.story.enrolments]:
        offering = data.offering_of(item)
        enrolment.check_can_enrol(
            "published", day(offering["enrolment_opens"]), day(offering["enrolment_closes"]), today
        )
        assert item["home_institution_id"] != data.provider_of(offering), f"{item['key']} enrols in its own course"


@pytest.mark.parametrize("today", [TODAY + timedelta(days=n) for n in range(0, 366, 7)], ids=str)
def test_the_academic_year_is_counted_as_the_catalogue_counts_it(today: date) -> None:
    assert demo_data.academic_year_of(today) == catalogue.academic_year_of(today)


def test_member_prices_are_the_catalogue_guideline_prices(data: demo_data.DemoData) -> None:
    guideline = catalogue.Guideline(
        price_per_credit=Decimal(demo_data.GUIDELINE["price_per_credit"]),
        external_surcharge_percent=Decimal(demo_data.GUIDELINE["external_surcharge_percent"]),
    )
    own = [o for o in data.offerings if "member_price" in o]
    assert own, "some offerings set their own prices"
    for offering in data.offerings:
        if "member_price" in offering:
            assert data.member_price(offering) == Decimal(offering["member_price"])
        else:
            credits = Decimal(data.course_of(offering)["credits"])
            assert data.member_price(offering) == catalogue.guideline_prices(credits, guideline)[0]


def test_the_build_is_deterministic() -> None:
    assert demo_data.build(TODAY) == demo_data.build(TODAY)


def test_a_later_day_enrols_the_same_students_in_the_same_courses() -> None:
    """A rerun on another day must find its enrolments by their keys and set the same policies, not add more."""
    first = demo_data.build(DAYS[0])
    assert first.story is not None
    for today in DAYS[1:]:
        later = demo_data.build(today)
        assert later.story is not None
        assert [e["key"] for e in later.enrolments] == [e["key"] for e in first.enrolments]
        assert [e["key"] for e in later.story.enrolments] == [e["key"] for e in first.story.enrolments]
        assert later.story.policies == first.story.policies


def test_every_key_is_unique(data: demo_data.DemoData, story: demo_data.Story) -> None:
    keys = [i["key"] for i in (*data.institutions, *data.courses, *data.offerings, *data.enrolments, *story.enrolments)]
    assert [k for k, n in Counter(keys).items() if n > 1] == []
    everyone = [*data.enrolments, *story.enrolments]
    learners = [(e["offering_id"], e["student"]["learner_id"]) for e in everyone]
    assert len(set(learners)) == len(learners), "a student enrols twice in one offering"
    names = {(e["home_institution_id"], e["student"]["learner_id"], e["student"]["name"]) for e in everyone}
    assert len(names) == len({name[:2] for name in names}), "one learner id names two different students"


# --- the story ----------------------------------------------------------------------------------------------------


def homes(data: demo_data.DemoData, keys: list[str]) -> set[str]:
    return {data.item(key)["home_institution_id"] for key in keys}


def test_the_manual_school_is_a_member_whose_commitments_partly_stay_pending(
    data: demo_data.DemoData, story: demo_data.Story
) -> None:
    school = story.manual_school
    assert school in MEMBERS
    policy = story.policies[school]
    billing.check_policy(billing.Mode(policy["mode"]), policy.get("yearly_budget"))
    assert policy["mode"] == "manual"
    mine = [e["key"] for e in story.enrolments if e["home_institution_id"] == school]
    accepted = {d.enrolment for d in story.decisions if d.accept}
    assert len(mine) >= 2
    assert 0 < len(accepted & set(mine)) < len(mine), "some accepted by hand, some left pending"


def test_the_budget_school_runs_out_of_budget(data: demo_data.DemoData, story: demo_data.Story) -> None:
    school = story.budget_school
    assert school in MEMBERS and school != story.manual_school
    policy = story.policies[school]
    assert policy["mode"] == "automatic"
    budget = Decimal(policy["yearly_budget"])
    billing.check_policy(billing.Mode.AUTOMATIC, budget)
    mine = [e for e in story.enrolments if e["home_institution_id"] == school]
    years = {year_of(data.offering_of(e)) for e in mine}
    assert len(years) == 1, "the budget is per academic year: the story's enrolments share one"
    used = sum(
        (
            data.member_price(data.offering_of(e))
            for e in data.enrolments
            if e["home_institution_id"] == school and year_of(data.offering_of(e)) in years
        ),
        Decimal("0.00"),
    )
    outcomes = []
    for item in mine:  # billing's own rule, applied in the order the demo enrols them
        amount = data.member_price(data.offering_of(item))
        accepted = billing.accepts_automatically("automatic", budget, used, amount)
        used += amount if accepted else 0
        outcomes.append(accepted)
    assert outcomes[0] is True
    assert outcomes.count(False) >= 1, "the budget runs out"


def test_the_late_offering_started_after_its_deadline_with_enrolment_still_open(
    data: demo_data.DemoData, story: demo_data.Story
) -> None:
    offering = data.item(story.late_offering)
    deadline, start = day(offering["free_cancellation_deadline"]), day(offering["start_date"])
    assert start < TODAY and deadline < TODAY
    enrolment.check_can_enrol("published", day(offering["enrolment_opens"]), day(offering["enrolment_closes"]), TODAY)
    courses = [o for o in data.offerings if o["course_id"] == offering["course_id"]]
    assert courses == [offering], "the late offering's course has no other offering (the loader finds it by course)"


def test_withdrawals_fall_before_and_after_the_deadline(data: demo_data.DemoData, story: demo_data.Story) -> None:
    kinds = set()
    for withdrawal in story.withdrawals:
        offering = data.offering_of(data.item(withdrawal.enrolment))
        decision = enrolment.withdraw("confirmed", deadline_of(offering), TODAY, Decimal(100))
        assert decision.late is withdrawal.late, withdrawal
        assert billing.after_withdrawal("accepted", Decimal("80.00"), decision.charge_percent) is not None
        kinds.add(withdrawal.late)
    assert kinds == {True, False}
    late = [w for w in story.withdrawals if w.late]
    assert all(data.item(w.enrolment)["offering_id"] == story.late_offering for w in late)


def test_results_cover_every_outcome_for_students_who_will_be_confirmed(
    data: demo_data.DemoData, story: demo_data.Story
) -> None:
    assert {r.outcome for r in story.results} == set(enrolment.Outcome)
    for result in story.results:
        item = data.item(result.enrolment)
        assert item["home_institution_id"] in MEMBERS - {story.manual_school, story.budget_school}, (
            "results need a confirmed enrolment: the home accepts automatically and without a budget"
        )
        assert enrolment.Outcome(result.body()["outcome"]) == enrolment.Outcome(result.outcome)
    passed = next(r for r in story.results if r.outcome == "passed")
    assert passed.grade and passed.credits
    course = data.course_of(data.offering_of(data.item(passed.enrolment)))
    assert Decimal(passed.credits) == Decimal(course["credits"])
    assert not {r.enrolment for r in story.results} & {w.enrolment for w in story.withdrawals}


def test_the_cancelled_offering_has_enrolments_and_nothing_else_happens_to_them(
    data: demo_data.DemoData, story: demo_data.Story
) -> None:
    offering = data.item(story.cancelled)
    assert catalogue.cancel("published") == catalogue.OfferingStatus.CANCELLED
    assert story.cancel_reason
    inside = {e["key"] for e in story.enrolments if e["offering_id"] == offering["key"]}
    assert len(inside) >= 2
    acted_on = {r.enrolment for r in story.results} | {w.enrolment for w in story.withdrawals}
    acted_on |= {d.enrolment for d in story.decisions}
    assert not inside & acted_on
    assert OUTSIDE in homes(data, sorted(inside)), "a pending commitment is voided too"
    assert day(offering["start_date"]) > TODAY


def test_a_rejection_in_the_full_offering_promotes_the_first_waitlisted(
    data: demo_data.DemoData, story: demo_data.Story
) -> None:
    rejected = [d for d in story.decisions if not d.accept]
    assert len(rejected) == 1
    offering_key = data.item(rejected[0].enrolment)["offering_id"]
    queue = [e["key"] for e in data.enrolments if e["offering_id"] == offering_key]
    seats = data.item(offering_key)["max_participants"]
    assert len(queue) > seats, "the offering is full and has a waitlist"
    assert queue.index(rejected[0].enrolment) < seats, "the rejected student holds a seat"
    assert story.promoted == [queue[seats]]


def test_only_commitments_that_wait_for_a_counsellor_are_decided_by_hand(
    data: demo_data.DemoData, story: demo_data.Story
) -> None:
    by_id = {i["id"]: i for i in data.institutions}
    for decision in story.decisions:
        home = data.item(decision.enrolment)["home_institution_id"]
        mode = story.policies.get(home, {}).get("mode") or billing.default_mode(by_id[home]["member"])
        assert mode == "manual", f"{decision.enrolment}: {home} accepts automatically"
    outside = [d for d in story.decisions if data.item(d.enrolment)["home_institution_id"] == OUTSIDE]
    assert {d.accept for d in outside} == {True, False}, "the outside institution accepts some and rejects one"


def test_the_outside_institution_keeps_a_pending_commitment_at_an_external_price(
    data: demo_data.DemoData, story: demo_data.Story
) -> None:
    decided = {d.enrolment for d in story.decisions}
    pending = [
        e
        for e in story.enrolments
        if e["home_institution_id"] == OUTSIDE and e["key"] not in decided and e["offering_id"] != story.cancelled
    ]
    assert pending
    assert all("external_price" in data.offering_of(e) for e in pending), "shows a provider's own external price"


def test_the_invoice_run_covers_today(story: demo_data.Story) -> None:
    run = story.invoice_run
    assert day(run["period_start"]) <= TODAY <= day(run["period_end"])
    billing.check_period(day(run["period_start"]), day(run["period_end"]))
    assert run["key"] == f"demo-invoice-run-{TODAY:%Y-%m}"
