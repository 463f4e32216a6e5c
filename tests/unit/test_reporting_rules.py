"""Reporting's pure rules: statuses, counter contributions, figures, format negotiation, CSV and XLSX."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime

import openpyxl  # type: ignore[import-untyped]
import pytest

from services.reporting import domain
from services.reporting.domain import CommitmentState, EnrolmentState
from services.reporting.export import XLSX, Column, Report, choose_format, to_csv, to_xlsx
from shared.errors import Invalid


@pytest.mark.parametrize(
    ("routing_key", "outcome", "status"),
    [
        ("enrolment.requested", None, "awaiting_commitment"),
        ("enrolment.waitlisted", None, "waitlisted"),
        ("enrolment.confirmed", None, "confirmed"),
        ("enrolment.rejected", None, "rejected"),
        ("enrolment.withdrawn", None, "withdrawn"),
        ("enrolment.cancelled", None, "cancelled"),
        ("enrolment.completed", "passed", "passed"),
        ("enrolment.completed", "failed", "failed"),
        ("enrolment.completed", "interrupted", "interrupted"),
    ],
)
def test_each_enrolment_event_implies_one_status(routing_key: str, outcome: str | None, status: str) -> None:
    assert domain.enrolment_status(routing_key, outcome) == status


def test_a_result_with_an_unknown_outcome_is_refused() -> None:
    with pytest.raises(Invalid, match="outcome 'excellent'"):
        domain.enrolment_status("enrolment.completed", "excellent")


def test_moving_an_enrolment_moves_one_count_and_keeps_requests() -> None:
    old = domain.enrolment_contribution(EnrolmentState("awaiting_commitment"))
    new = domain.enrolment_contribution(EnrolmentState("passed", credits_centi=250))
    delta = {k: new.get(k, 0) - old.get(k, 0) for k in set(old) | set(new)}
    assert delta == {"requests": 0, "awaiting_commitment": -1, "passed": 1, "credits_earned": 250}
    assert domain.enrolment_contribution(None) == {}


def test_only_late_withdrawals_failures_and_interruptions_need_follow_up() -> None:
    assert domain.needs_follow_up(EnrolmentState("withdrawn", late=True))
    assert not domain.needs_follow_up(EnrolmentState("withdrawn", late=False))
    assert domain.needs_follow_up(EnrolmentState("failed")) and domain.needs_follow_up(EnrolmentState("interrupted"))
    assert not domain.needs_follow_up(EnrolmentState("passed"))
    assert domain.enrolment_contribution(EnrolmentState("withdrawn", late=True))["withdrawn_late"] == 1


def test_commitments_count_as_committed_when_accepted_or_chargeable_and_chargeable_at_the_charged_amount() -> None:
    accepted = domain.commitment_contribution(CommitmentState("accepted", 12000))
    chargeable = domain.commitment_contribution(CommitmentState("chargeable", 12000, 6000))
    voided = domain.commitment_contribution(CommitmentState("voided", 12000))
    assert accepted == {"commitments": 1, "committed_count": 1, "committed_cents": 12000}
    assert chargeable["committed_cents"] == 12000 and chargeable["chargeable_cents"] == 6000
    assert voided == {"commitments": 1, "voided_count": 1, "voided_cents": 12000}
    assert "committed_cents" not in domain.commitment_contribution(CommitmentState("pending", 12000))
    with pytest.raises(Invalid):
        domain.commitment_contribution(CommitmentState("lost", 1))


def test_participant_row_holds_awaiting_confirmed_and_finished_seats_and_completes_any_result() -> None:
    row = domain.participant_row({"awaiting_commitment": 2, "confirmed": 3, "passed": 1, "interrupted": 1})
    assert (row["held"], row["completed"], row["waitlisted"]) == (7, 2, 0)


@pytest.mark.parametrize(
    ("passed", "results", "shown"),
    [(2, 3, "0.6667"), (1, 8, "0.1250"), (1, 20000, "0.0001"), (0, 4, "0.0000"), (3, 3, "1.0000"), (0, 0, None)],
)
def test_rates_have_four_places_rounded_half_up_and_are_null_without_results(
    passed: int, results: int, shown: str | None
) -> None:
    assert domain.rate(passed, results) == shown


def test_money_and_credits_are_exact_decimal_strings() -> None:
    assert domain.money(123450) == "1234.50" and domain.money(0) == "0.00" and domain.money(-5) == "-0.05"
    assert domain.to_cents("120.10") == 12010
    with pytest.raises(Invalid):
        domain.to_cents("0.001")
    assert (
        domain.credits_centi("2.5") == 250 and domain.credits_centi(None) == 0 and domain.credits_centi("1.005") == 101
    )
    assert [domain.credits_text(c) for c in (600, 250, 125, 0)] == ["6.0", "2.5", "1.25", "0.0"]


def test_academic_years_run_from_august_to_july() -> None:
    assert domain.academic_year_of(date(2026, 8, 1)) == "2026-2027"
    assert domain.academic_year_of(datetime(2026, 7, 31, 23, 59, tzinfo=UTC)) == "2025-2026"
    assert domain.period_of(date(2026, 9, 15)) == "2026-09" and domain.period_of(None) is None
    domain.check_academic_year("2026-2027")
    for bad in ("2026", "2026-2028", "26-27", "2026/2027"):
        with pytest.raises(Invalid):
            domain.check_academic_year(bad)


@pytest.mark.parametrize(
    ("param", "accept", "chosen"),
    [
        (None, None, "json"),
        (None, "text/csv", "csv"),
        (None, XLSX, "xlsx"),
        (None, "application/json, text/csv", "json"),
        (None, f"text/csv;q=0.4, {XLSX};q=0.8", "xlsx"),
        (None, "text/csv;q=0", "json"),
        (None, "text/html, */*;q=0.8", "json"),
        ("CSV", XLSX, "csv"),
        ("xlsx", "text/csv", "xlsx"),
    ],
)
def test_the_format_comes_from_the_parameter_else_the_accept_header(
    param: str | None, accept: str | None, chosen: str
) -> None:
    assert choose_format(param, accept) == chosen


def test_an_unknown_format_is_refused_with_the_choices() -> None:
    with pytest.raises(Invalid, match="json, csv, xlsx"):
        choose_format("pdf", None)


REPORT = Report(
    "billing",
    {},
    (
        Column("institution_id"),
        Column("side.amount", "money"),
        Column("side.count", "int"),
        Column("rate", "rate"),
        Column("credits", "decimal"),
        Column("day", "date"),
        Column("late", "bool"),
        Column("by_home", "breakdown"),
    ),
    [
        {
            "institution_id": "äänekoski",
            "side": {"amount": "1234.50", "count": 3},
            "rate": "0.2500",
            "credits": "2.5",
            "day": "2026-09-01",
            "late": True,
            "by_home": {"kao": {"held": 2, "waitlisted": 0}, "sakky": {"held": 0}},
        },
        {"institution_id": "kao", "side": {"amount": "0.00", "count": 0}, "rate": None, "late": False},
    ],
    "billing-2026-2027",
)


def test_csv_has_a_header_row_and_one_flattened_row_per_item_in_utf8() -> None:
    text = to_csv(REPORT).decode("utf-8")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["institution_id", "side_amount", "side_count", "rate", "credits", "day", "late", "by_home"]
    assert rows[1] == ["äänekoski", "1234.50", "3", "0.2500", "2.5", "2026-09-01", "true", "kao: held 2; sakky: -"]
    assert rows[2] == ["kao", "0.00", "0", "", "", "", "false", ""]


def test_xlsx_types_every_cell_and_formats_the_header() -> None:
    sheet = openpyxl.load_workbook(io.BytesIO(to_xlsx(REPORT))).active
    assert sheet is not None
    assert sheet.title == "billing" and sheet.freeze_panes == "A2" and sheet.auto_filter.ref == "A1:H3"
    assert [c.value for c in sheet[1]] == [
        "institution_id",
        "side_amount",
        "side_count",
        "rate",
        "credits",
        "day",
        "late",
        "by_home",
    ]
    assert all(c.font.bold for c in sheet[1])
    amount, count, rate, credits, day, late = (sheet.cell(row=2, column=i) for i in range(2, 8))
    assert (amount.value, amount.number_format) == (1234.5, "#,##0.00")
    assert count.value == 3 and isinstance(count.value, int)
    assert (rate.value, rate.number_format) == (0.25, "0.00%")
    assert credits.value == 2.5
    assert day.is_date and day.value.date() == date(2026, 9, 1)
    assert late.value is True
    assert sheet.cell(row=3, column=4).value is None
    assert sheet.column_dimensions["A"].width >= len("äänekoski")
    assert sheet.column_dimensions["H"].width >= len("kao: held 2; sakky: -")
