"""Pure catalogue rules: word folding for search, changes to courses/offerings/institutions, lifecycle, CSV reading."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from services.catalogue import domain, search
from services.catalogue.imports import csvfile
from shared.errors import Conflict, Invalid

GUIDELINE = domain.Guideline(price_per_credit=Decimal("40.00"), external_surcharge_percent=Decimal(25))


# --- search words ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Äidinkieli ja kirjallisuus", ["aidinkieli", "ja", "kirjallisuus"]),
        ("YHTÄLÖT, åäö!", ["yhtalot", "aao"]),
        ("Modersmål och litteratur", ["modersmal", "och", "litteratur"]),
        ("MAA-02 online_self_paced", ["maa", "02", "online", "self", "paced"]),
        ("Straße", ["strasse"]),
        (None, []),
    ],
)
def test_words_are_folded_to_lower_case_without_accents(text: str | None, expected: list[str]) -> None:
    assert search.words(text) == expected


def test_a_course_is_indexed_by_code_titles_subject_and_descriptions_with_weights() -> None:
    course = {
        "code": "MAA-02",
        "titles": {"fi": "Funktiot", "sv": "Funktioner", "en": None},
        "descriptions": {"fi": "Funktiot ja yhtälöt", "sv": None, "en": "Equations"},
        "subject": "mathematics",
    }
    weights = search.term_weights(course)
    assert weights["maa02"] == weights["maa"] == search.WEIGHTS["code"]
    assert weights["funktiot"] == search.WEIGHTS["title"]  # the title outweighs the same word in a description
    assert weights["yhtalot"] == weights["equations"] == search.WEIGHTS["description"]
    assert weights["mathematics"] == search.WEIGHTS["subject"]


def test_query_words_are_distinct_and_capped() -> None:
    assert search.query_terms("Matem matem MATEM") == ["matem"]
    assert len(search.query_terms(" ".join(f"w{i}" for i in range(20)))) == search.MAX_QUERY_TERMS
    assert search.query_terms("  !! ") == []


@pytest.mark.parametrize(("term", "high"), [("matem", "maten"), ("z", "{"), ("ab9", "ab:")])
def test_prefix_bounds_hold_exactly_the_words_starting_with_the_term(term: str, high: str) -> None:
    low, upper = search.prefix_bounds(term)
    assert (low, upper) == (term, high)
    assert low <= term + "tiikka" < upper
    assert not low <= term[:-1] < upper


def test_the_title_sort_key_takes_the_first_title_folded() -> None:
    assert search.title_key({"fi": None, "sv": "Ämnet", "en": "Subject"}) == "amnet"


# --- changes to offerings ---------------------------------------------------------------------------


def offering(**overrides: Any) -> dict[str, Any]:
    return {
        "status": "published",
        "start_date": date(2026, 9, 1),
        "end_date": date(2026, 12, 1),
        "enrolment_opens": date(2026, 8, 1),
        "enrolment_closes": date(2026, 8, 25),
        "min_participants": 1,
        "max_participants": 20,
        "member_price": Decimal("120.00"),
        "external_price": Decimal("150.00"),
        "free_cancellation_deadline": date(2026, 9, 15),
        "academic_year": "2026-2027",
        **overrides,
    }


def test_revising_an_offering_returns_only_what_changes() -> None:
    diff = domain.revise_offering(offering(), {"max_participants": 5, "min_participants": 1}, Decimal(3), GUIDELINE)
    assert diff == {"max_participants": 5}
    assert domain.revise_offering(offering(), {}, Decimal(3), GUIDELINE) == {}


def test_a_moved_start_moves_the_deadline_and_the_academic_year() -> None:
    diff = domain.revise_offering(
        offering(),
        {"start_date": date(2026, 7, 20), "enrolment_opens": date(2026, 6, 1), "enrolment_closes": date(2026, 7, 1)},
        Decimal(3),
        GUIDELINE,
    )
    assert diff["free_cancellation_deadline"] == date(2026, 8, 3)  # 14 days after start, as before
    assert diff["academic_year"] == "2025-2026"


def test_a_null_price_or_deadline_returns_to_the_guideline_default() -> None:
    diff = domain.revise_offering(
        offering(free_cancellation_deadline=date(2026, 9, 30)),
        {"member_price": None, "external_price": None, "free_cancellation_deadline": None},
        Decimal("2.5"),
        GUIDELINE,
    )
    assert diff == {
        "member_price": Decimal("100.00"),
        "external_price": Decimal("125.00"),
        "free_cancellation_deadline": date(2026, 9, 15),
    }


def test_a_revision_breaking_the_plan_rules_is_refused() -> None:
    with pytest.raises(Invalid, match="end_date is before start_date"):
        domain.revise_offering(offering(), {"end_date": date(2026, 8, 1)}, Decimal(3), GUIDELINE)
    with pytest.raises(Invalid, match="min_participants"):
        domain.revise_offering(offering(), {"max_participants": 2, "min_participants": 3}, Decimal(3), GUIDELINE)


def test_a_cancelled_offering_cannot_change_but_an_empty_change_is_fine() -> None:
    with pytest.raises(Conflict, match="cancelled"):
        domain.revise_offering(offering(status="cancelled"), {"max_participants": 9}, Decimal(3), GUIDELINE)
    assert domain.revise_offering(offering(status="cancelled"), {"max_participants": 20}, Decimal(3), GUIDELINE) == {}


def test_new_offering_prices_default_from_the_guideline_half_up() -> None:
    plan = domain.OfferingPlan(date(2026, 9, 1), date(2026, 12, 1), date(2026, 8, 1), date(2026, 8, 25), 1, 20)
    guideline = domain.Guideline(price_per_credit=Decimal("33.33"), external_surcharge_percent=Decimal("12.5"))
    values = domain.new_offering_values(plan, Decimal("2.5"), guideline)
    assert (values["member_price"], values["external_price"]) == (Decimal("83.33"), Decimal("93.75"))
    assert values["free_cancellation_deadline"] == date(2026, 9, 15)
    own = domain.new_offering_values(plan, Decimal("2.5"), guideline, member_price=Decimal("10.00"))
    assert (own["member_price"], own["external_price"]) == (Decimal("10.00"), Decimal("93.75"))


# --- changes to courses and institutions -------------------------------------------------------------


def course(**overrides: Any) -> dict[str, Any]:
    return {
        "titles": {"fi": "Funktiot", "sv": None, "en": "Functions"},
        "descriptions": {"fi": None, "sv": None, "en": None},
        "subject": "mathematics",
        "level": "upper_secondary",
        "credits": Decimal("2.0"),
        "languages": ["fi"],
        "delivery_mode": "blended",
        "teacher_contact": None,
        **overrides,
    }


def test_course_texts_merge_per_language_and_null_removes_one() -> None:
    diff = domain.revise_course(course(), {"titles": {"sv": "Funktioner", "en": None}})
    assert diff == {"title_sv": "Funktioner", "title_en": None}


def test_a_course_keeps_at_least_one_title() -> None:
    with pytest.raises(Invalid, match="title"):
        domain.revise_course(course(), {"titles": {"fi": None, "en": ""}})


def test_course_languages_are_stored_once_each_and_equal_credits_change_nothing() -> None:
    assert domain.revise_course(course(), {"languages": ["sv", "fi", "sv"]}) == {"languages": "sv,fi"}
    assert domain.revise_course(course(), {"credits": Decimal("2")}) == {}


def test_institution_names_merge_and_cannot_all_go() -> None:
    current = {
        "names": {"fi": "Sakky", "sv": None, "en": None},
        "kind": "vocational",
        "member": True,
        "municipality": None,
        "region": "Pohjois-Savo",
        "business_id": None,
        "einvoice_address": None,
    }
    assert domain.revise_institution(current, {"names": {"en": "Sakky"}, "member": True}) == {"name_en": "Sakky"}
    assert domain.revise_institution(current, {"region": None}) == {"region": None}
    with pytest.raises(Invalid, match="names"):
        domain.revise_institution(current, {"names": {"fi": None}})


# --- lifecycle ------------------------------------------------------------------------------------------


def test_the_offering_lifecycle() -> None:
    assert domain.cancel("draft") == domain.cancel("published") == domain.cancel("closed") == "cancelled"
    assert domain.close("published") == "closed"
    assert domain.complete("published") == domain.complete("closed") == "completed"
    for refused in (
        lambda: domain.cancel("cancelled"),
        lambda: domain.cancel("completed"),
        lambda: domain.close("draft"),
        lambda: domain.complete("draft"),
        lambda: domain.complete("cancelled"),
        lambda: domain.publish("cancelled"),
    ):
        with pytest.raises(Conflict):
            refused()


# --- reading CSV ----------------------------------------------------------------------------------------

HEADER = (
    "external_id,code,title_fi,title_sv,description_fi,subject,level,credits,languages,delivery_mode,"
    "start_date,end_date,enrolment_opens,enrolment_closes,min_participants,max_participants,member_price,publish"
)
GOOD = (
    "o1,MAA2,Funktiot,Funktioner,,mathematics,upper_secondary,2,fi;sv,blended,"
    "2026-09-01,2026-12-01,2026-08-01,2026-08-25,,20,,true"
)


def read(text: str, provider: str | None = "sakky") -> list[csvfile.Row]:
    return csvfile.read(text.encode(), provider)


def test_a_good_row_is_read_with_absent_optional_cells_left_out() -> None:
    [row] = read(f"{HEADER}\n{GOOD}\n")
    assert row.errors == [] and row.line == 2 and row.provider_id == "sakky" and row.publish is True
    assert row.course["languages"] == ["fi", "sv"] and row.course["credits"] == Decimal(2)
    assert row.course["titles"] == {"fi": "Funktiot", "sv": "Funktioner"} and row.course["descriptions"] == {}
    assert "member_price" not in row.offering and "min_participants" not in row.offering
    assert row.offering["max_participants"] == 20 and row.offering["start_date"] == date(2026, 9, 1)


def test_line_numbers_count_physical_lines_of_quoted_cells_and_blank_lines() -> None:
    multi_line = GOOD.replace("Funktioner,,", 'Funktioner,"Rivi 1\nRivi 2\nRivi 3",').replace("o1,", "o2,")
    rows = read(f"{HEADER}\n{GOOD}\n\n{multi_line}\n{GOOD.replace('o1,', 'o3,')}\n")
    assert [row.line for row in rows] == [2, 4, 7]
    assert rows[1].course["descriptions"] == {"fi": "Rivi 1\nRivi 2\nRivi 3"}


def test_every_problem_of_a_row_is_reported_with_its_column() -> None:
    bad = (
        "o1,MAA2,Funktiot,,,mathematics,upper_secondary,2.25,fi;de,by_post,"
        "2026-13-01,2026-12-01,2026-08-01,2026-08-25,x,0,-5,maybe"
    )
    [row] = read(f"{HEADER}\n{bad}\n")
    assert row.errors == [
        "credits: 2.25 has more than 1 decimals",
        "languages: 'fi;de' is not a list of fi, sv, en",
        "delivery_mode: 'by_post' is not one of online_self_paced, online_scheduled, blended",
        "start_date: '2026-13-01' is not a date of the form YYYY-MM-DD",
        "max_participants: '0' is not a whole number from 1 to 10000",
        "min_participants: 'x' is not a whole number from 0 to 10000",
        "member_price: -5 is negative",
        "publish: 'maybe' is neither true nor false",
    ]


def test_a_row_without_titles_or_with_the_wrong_number_of_cells_is_refused() -> None:
    no_title = GOOD.replace("Funktiot,Funktioner", ",")
    rows = read(f"{HEADER}\n{no_title}\n{GOOD},extra\no9,short\n")
    assert rows[0].errors == ["title_fi, title_sv, title_en: at least one title is required"]
    assert rows[1].errors == ["the row has 19 values but the header has 18 columns"]
    assert rows[2].errors == ["the row has 2 values but the header has 18 columns"]


def test_semicolons_and_decimal_commas_as_a_finnish_spreadsheet_saves_them() -> None:
    text = HEADER.replace(",", ";") + "\n" + GOOD.replace(",", ";").replace(";2;", ";2,5;").replace("fi;sv", "fi sv")
    [row] = read(text)
    assert row.errors == []
    assert row.course["credits"] == Decimal("2.5") and row.course["languages"] == ["fi", "sv"]


def test_provider_comes_from_the_row_or_the_request_and_they_must_agree() -> None:
    header = "provider_id," + HEADER
    rows = read(f"{header}\nkao,{GOOD}\n,{GOOD}\n", provider=None)
    assert rows[0].provider_id == "kao" and rows[0].errors == []
    assert rows[1].errors == ["provider_id: is required (or give ?provider_id= on the request)"]
    [mismatch] = read(f"{header}\nkao,{GOOD}\n", provider="sakky")
    assert mismatch.errors == ["provider_id: 'kao' differs from provider_id='sakky' of the request"]


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        ("", "empty"),
        (HEADER + "\n", "no rows"),
        ("code,title_fi\nX,Y\n", "Required columns are missing: external_id, subject, level, credits"),
        (HEADER.replace("title_fi,title_sv,", ""), "title_fi (or title_sv, title_en)"),
        (HEADER + ",colour\n", "Unknown columns: colour"),
        (HEADER + ",code\n", "Columns appear twice: code"),
        ('{"offerings": [1, 2]}', "Required columns are missing"),
    ],
)
def test_a_file_that_cannot_be_used_is_refused_as_a_whole(text: str, phrase: str) -> None:
    with pytest.raises(Invalid, match=phrase.replace("(", r"\(").replace(")", r"\)")):
        read(text)


def test_a_missing_provider_column_is_named_when_the_request_gives_none() -> None:
    with pytest.raises(Invalid) as caught:
        read(f"{HEADER}\n{GOOD}\n", provider=None)
    assert caught.value.details["missing_columns"] == ["provider_id (or ?provider_id= on the request)"]


def test_binary_and_oversized_files_are_refused() -> None:
    with pytest.raises(Invalid, match="not UTF-8"):
        csvfile.read(b"\xff\xd8\xff\xe0 jpeg", "sakky")
    with pytest.raises(Invalid, match="NUL"):
        csvfile.read(b"a,b\x00,c\n", "sakky")
    too_many = HEADER + "\n" + "\n".join(GOOD.replace("o1,", f"o{i},") for i in range(csvfile.MAX_ROWS + 1))
    with pytest.raises(Invalid, match="more than 5000 rows"):
        read(too_many)
