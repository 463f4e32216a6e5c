"""Billing's pure rules: shares to the cent, lifecycle transitions, invoice adjustments, numbers, parties."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy.exc import DBAPIError

from services.billing import domain
from services.billing.api import negotiate, retrying_conflicts
from services.billing.domain import DocumentKind, Reason, Status
from services.billing.einvoice import Party
from shared.errors import Conflict, Invalid, NotFound

D = Decimal


@pytest.mark.parametrize(
    ("amount", "percent", "share"),
    [
        ("120.00", "50", "60.00"),
        ("33.33", "50", "16.67"),  # 16.665 rounds half up, not to even
        ("0.05", "50", "0.03"),
        ("99.99", "33.33", "33.33"),  # 33.326667
        ("150.00", "100", "150.00"),
        ("120.00", "0", "0.00"),
    ],
)
def test_a_share_of_the_price_is_rounded_half_up_once(amount: str, percent: str, share: str) -> None:
    assert domain.share(D(amount), D(percent)) == D(share)


def test_withdrawal_voids_a_pending_or_free_commitment_and_charges_the_late_share() -> None:
    assert domain.after_withdrawal(Status.PENDING, D("120.00"), D(50)) == domain.Transition(
        Status.VOIDED, Reason.WITHDRAWN
    )
    assert domain.after_withdrawal(Status.ACCEPTED, D("120.00"), D(0)) == domain.Transition(
        Status.VOIDED, Reason.WITHDRAWN
    )
    assert domain.after_withdrawal(Status.ACCEPTED, D("120.00"), D(50)) == domain.Transition(
        Status.CHARGEABLE, Reason.LATE_WITHDRAWAL, D(50), D("60.00")
    )
    assert domain.after_withdrawal(Status.CHARGEABLE, D("33.33"), D(50)) == domain.Transition(
        Status.CHARGEABLE, Reason.LATE_WITHDRAWAL, D(50), D("16.67")
    )
    assert domain.after_withdrawal(Status.REJECTED, D("120.00"), D(50)) is None
    assert domain.after_withdrawal(Status.VOIDED, D("120.00"), D(50)) is None


@pytest.mark.parametrize("status", [Status.PENDING, Status.ACCEPTED, Status.CHARGEABLE])
def test_a_cancelled_offering_voids_every_live_commitment(status: Status) -> None:
    assert domain.after_cancellation(status) == domain.Transition(Status.VOIDED, Reason.OFFERING_CANCELLED)


@pytest.mark.parametrize("status", [Status.REJECTED, Status.VOIDED])
def test_a_cancelled_offering_leaves_rejected_and_voided_alone(status: Status) -> None:
    assert domain.after_cancellation(status) is None


def test_a_result_charges_in_full_or_the_late_share_when_interrupted() -> None:
    passed = domain.after_result(Status.ACCEPTED, D("120.00"), "passed", D(100))
    assert passed == domain.Transition(Status.CHARGEABLE, Reason.RESULT_RECORDED, D(100), D("120.00"))
    interrupted = domain.after_result(Status.CHARGEABLE, D("120.00"), "interrupted", D(75))
    assert interrupted == domain.Transition(Status.CHARGEABLE, Reason.INTERRUPTED, D(75), D("90.00"))
    assert domain.after_result(Status.PENDING, D("120.00"), "passed", D(100)) is None
    assert domain.after_result(Status.VOIDED, D("120.00"), "failed", D(100)) is None


def test_the_deadline_day_itself_is_free_and_the_day_after_charges_in_full() -> None:
    deadline = date(2026, 9, 14)
    assert not domain.deadline_passed(deadline, date(2026, 9, 14))
    assert domain.deadline_passed(deadline, date(2026, 9, 15))
    assert not domain.deadline_passed(None, date(2030, 1, 1))
    assert domain.charged_from(deadline) == date(2026, 9, 15)
    assert domain.after_deadline(Status.ACCEPTED, D("120.00")) == domain.Transition(
        Status.CHARGEABLE, Reason.DEADLINE_PASSED, D(100), D("120.00")
    )
    assert domain.after_deadline(Status.PENDING, D("120.00")) is None


def test_a_transition_that_changes_neither_status_nor_amount_is_no_change() -> None:
    full = domain.Transition(Status.CHARGEABLE, Reason.RESULT_RECORDED, D(100), D("120.00"))
    assert not domain.changes(Status.CHARGEABLE, D("120.00"), full)
    assert domain.changes(Status.CHARGEABLE, D("60.00"), full)
    assert domain.changes(Status.ACCEPTED, None, full)


@pytest.mark.parametrize(
    ("status", "chargeable", "billed", "expected"),
    [
        (Status.CHARGEABLE, "60.00", "0.00", (DocumentKind.INVOICE, "60.00")),
        (Status.CHARGEABLE, "120.00", "120.00", None),
        (Status.VOIDED, "120.00", "120.00", (DocumentKind.CREDIT_NOTE, "120.00")),
        (Status.VOIDED, None, "0.00", None),
        (Status.CHARGEABLE, "60.00", "120.00", (DocumentKind.CREDIT_NOTE, "60.00")),
        (Status.ACCEPTED, None, "0.00", None),
    ],
)
def test_an_invoice_run_bills_the_difference_between_due_and_billed(
    status: Status, chargeable: str | None, billed: str, expected: tuple[DocumentKind, str] | None
) -> None:
    step = domain.adjustment(status, D(chargeable) if chargeable else None, D(billed))
    assert (step and (step.kind, step.amount)) == (expected and (expected[0], D(expected[1])))


def test_document_numbers_run_per_payee_with_a_series_of_their_own_for_credit_notes() -> None:
    assert domain.document_number(DocumentKind.INVOICE, "sakky", 2026, 1) == "SAKKY-2026-0001"
    assert domain.document_number(DocumentKind.INVOICE, "sakky", 2026, 12345) == "SAKKY-2026-12345"
    assert domain.document_number(DocumentKind.CREDIT_NOTE, "kao", 2027, 3) == "KAO-CN-2027-0003"


def test_bulk_decisions_name_every_id_that_is_missing_or_not_pending() -> None:
    domain.check_bulk(["a", "b"], {"a": "pending", "b": "pending"}, accept=True)
    with pytest.raises(NotFound) as missing:
        domain.check_bulk(["a", "x", "y"], {"a": "pending"}, accept=True)
    assert "x, y" in missing.value.message and missing.value.details["missing"] == ["x", "y"]
    with pytest.raises(Conflict) as blocked:
        domain.check_bulk(["a", "b", "c"], {"a": "pending", "b": "accepted", "c": "voided"}, accept=False)
    assert "b (accepted), c (voided)" in blocked.value.message and "none was rejected" in blocked.value.message
    assert blocked.value.details["not_pending"] == [{"id": "b", "status": "accepted"}, {"id": "c", "status": "voided"}]


def test_a_budget_belongs_to_automatic_mode_only() -> None:
    domain.check_policy(domain.Mode.AUTOMATIC, D("1000.00"))
    domain.check_policy(domain.Mode.MANUAL, None)
    with pytest.raises(Invalid):
        domain.check_policy(domain.Mode.MANUAL, D("1000.00"))


def test_an_invoice_period_must_be_in_order() -> None:
    domain.check_period(date(2026, 9, 1), date(2026, 9, 1))
    with pytest.raises(Invalid):
        domain.check_period(date(2026, 9, 2), date(2026, 9, 1))


def test_line_descriptions_say_why_and_at_which_share() -> None:
    late = domain.describe_line(DocumentKind.INVOICE, "o1", "2026-2027", D("120.00"), "late_withdrawal", D(50))
    assert late == "Course enrolment, offering o1, 2026-2027: late withdrawal, 50 % of 120.00"
    full = domain.describe_line(DocumentKind.INVOICE, "o1", "2026-2027", D("120.00"), "result_recorded", D(100))
    assert full == "Course enrolment, offering o1, 2026-2027: result recorded"
    credit = domain.describe_line(DocumentKind.CREDIT_NOTE, "o1", "2026-2027", D("120.00"), "offering_cancelled", None)
    assert credit == "Credit for course enrolment, offering o1, 2026-2027: offering cancelled by the provider"


def test_an_e_invoice_party_falls_back_from_address_to_business_id_to_nothing() -> None:
    full = Party("sakky", "Sakky", business_id="1234567-8", einvoice_address="003712345678")
    assert (full.endpoint, full.vat_id, full.display_name) == (("0216", "003712345678"), "FI12345678", "Sakky")
    schemed = Party("kao", einvoice_address="0037:003723456789")
    assert schemed.endpoint == ("0037", "003723456789")
    from_business_id = Party("kao", business_id="2345678-9")
    assert from_business_id.endpoint == ("0216", "003723456789")
    bare = Party("bare")
    assert (bare.endpoint, bare.vat_id, bare.display_name) == (None, None, "bare")


@pytest.mark.parametrize(
    ("accept", "chosen"),
    [
        (None, "json"),
        ("application/json", "json"),
        ("text/csv", "csv"),
        ("application/xml", "xml"),
        ("text/xml", "xml"),
        ("text/csv;q=0.5, application/xml", "xml"),
        ("*/*", "json"),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "xml"),
        ("application/pdf", None),
    ],
)
def test_content_negotiation_picks_json_csv_or_ubl(accept: str | None, chosen: str | None) -> None:
    assert negotiate(accept) == chosen


class _PgError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


async def test_a_deadlock_victim_runs_again_and_other_database_errors_surface() -> None:
    calls: list[int] = []

    async def deadlocked_once() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise DBAPIError("SELECT", {}, _PgError("40P01"))
        return "done"

    assert await retrying_conflicts(deadlocked_once) == "done" and len(calls) == 2

    async def broken() -> str:
        calls.append(1)
        raise DBAPIError("SELECT", {}, _PgError("23505"))

    calls.clear()
    with pytest.raises(DBAPIError):
        await retrying_conflicts(broken)
    assert len(calls) == 1

    async def always_deadlocked() -> str:
        calls.append(1)
        raise DBAPIError("SELECT", {}, _PgError("40P01"))

    calls.clear()
    with pytest.raises(DBAPIError):
        await retrying_conflicts(always_deadlocked)
    assert len(calls) == 3
