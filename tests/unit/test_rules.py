"""Pure rules of each service: prices, academic years, enrolment windows, commitment decisions."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from services.billing import domain as billing
from services.catalogue import domain as catalogue
from services.enrolment import domain as enrolment
from shared.errors import Conflict, Invalid
from shared.events import to_money


@pytest.mark.parametrize(
    ("day", "year"),
    [(date(2026, 8, 1), "2026-2027"), (date(2027, 7, 31), "2026-2027"), (date(2026, 7, 31), "2025-2026")],
)
def test_academic_year_runs_from_august_to_july(day: date, year: str) -> None:
    assert catalogue.academic_year_of(day) == year


def test_guideline_prices_member_and_external_to_the_cent() -> None:
    guideline = catalogue.Guideline(price_per_credit=Decimal("33.33"), external_surcharge_percent=Decimal("12.5"))
    member, external = catalogue.guideline_prices(Decimal("2.5"), guideline)
    assert member == Decimal("83.33")  # 83.325 rounds half up
    assert external == Decimal("93.75")  # 83.33 × 1.125 = 93.74625 → 93.75


def test_money_rounds_half_up_not_to_even() -> None:
    assert to_money(Decimal("0.125")) == Decimal("0.13")
    assert to_money(Decimal("0.135")) == Decimal("0.14")


@pytest.mark.parametrize("bad", ["2026", "2026-2028", "20262027", "abcd-efgh"])
def test_malformed_academic_year_is_refused(bad: str) -> None:
    with pytest.raises(Invalid):
        catalogue.check_academic_year(bad)


def test_offering_plan_with_end_before_start_is_refused() -> None:
    plan = catalogue.OfferingPlan(date(2026, 9, 1), date(2026, 8, 1), date(2026, 8, 1), date(2026, 8, 20), 1, 10)
    with pytest.raises(Invalid, match="end_date"):
        catalogue.check_offering_plan(plan)


def test_only_drafts_are_published() -> None:
    assert catalogue.publish("draft") == "published"
    with pytest.raises(Conflict):
        catalogue.publish("published")


def test_enrolment_window_and_status_are_enforced() -> None:
    opens, closes = date(2026, 9, 1), date(2026, 9, 30)
    enrolment.check_can_enrol("published", opens, closes, date(2026, 9, 15))
    with pytest.raises(Conflict, match="opens"):
        enrolment.check_can_enrol("published", opens, closes, date(2026, 8, 31))
    with pytest.raises(Conflict, match="closed"):
        enrolment.check_can_enrol("published", opens, closes, date(2026, 10, 1))
    with pytest.raises(Conflict, match="cancelled"):
        enrolment.check_can_enrol("cancelled", opens, closes, date(2026, 9, 15))


def test_a_late_commitment_decision_changes_nothing() -> None:
    assert enrolment.confirm("awaiting_commitment") == "confirmed"
    assert enrolment.confirm("withdrawn") is None
    assert enrolment.reject("confirmed") is None


def test_outside_institutions_pay_the_external_price_and_decide_by_hand() -> None:
    assert billing.price_for(True, Decimal("120.00"), Decimal("150.00")) == ("member", Decimal("120.00"))
    assert billing.price_for(False, Decimal("120.00"), Decimal("150.00")) == ("external", Decimal("150.00"))
    assert billing.default_mode(False) == "manual"
    assert billing.default_mode(True) == "automatic"


def test_budget_bounds_automatic_acceptance() -> None:
    assert billing.accepts_automatically("automatic", None, Decimal(0), Decimal("100.00"))
    assert billing.accepts_automatically("automatic", Decimal("300.00"), Decimal("200.00"), Decimal("100.00"))
    assert not billing.accepts_automatically("automatic", Decimal("300.00"), Decimal("200.01"), Decimal("100.00"))
    assert not billing.accepts_automatically("manual", None, Decimal(0), Decimal("1.00"))


def test_only_pending_commitments_are_decided() -> None:
    assert billing.decide("pending", accept=False) == "rejected"
    with pytest.raises(Conflict):
        billing.decide("accepted", accept=True)
