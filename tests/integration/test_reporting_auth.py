"""Who reads which report, and how much of it: tokens, roles and institution scope (tests/authz/matrix.csv).

A network of three institutions where alpha and beta share nothing and gamma deals with both:
- OA by alpha: a1 (alpha's student, passed), g1 (gamma's, failed);
- OB by beta: b1 (beta's, passed), b3 (beta's, interrupted), g2 (gamma's, failed);
- OG by gamma: a2 (alpha's, interrupted), b2 (beta's, withdrawn late);
- commitments for every cross-institution enrolment; invoices alpha→gamma, gamma→beta, beta→gamma.

So alpha's staff must see OA whole and OG with a2 only, and nothing of beta anywhere; beta's the
mirror image. Every role is checked against the matrix, and the scoped rows in JSON, CSV and XLSX.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from typing import Any

import httpx
import openpyxl  # type: ignore[import-untyped]
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from services.reporting.app import build_api
from services.reporting.export import XLSX
from services.reporting.settings import Settings
from tests.integration.test_reporting_scenario import YEAR, Network, feed, reporting_engine
from tests.support.apps import app_on, client_of
from tests.support.auth import ADMIN, bearer
from tests.support.infra import DB_KINDS, ROOT

pytestmark = pytest.mark.integration
REPORTS = ("/participants", "/completions", "/billing", "/supply-demand", "/follow-up/alpha")
STATUS = {"allow": 200, "filtered": 200, "forbidden": 403, "hidden": 404, "unauthenticated": 401}


def network() -> Network:
    n = Network()
    for slug in ("alpha", "beta", "gamma"):
        n.institution(slug, region=f"{slug}-region")
    n.publish("OA", "alpha", "Algebra", "mathematics", seats=5, minimum=1, start=date(2026, 9, 1))
    n.publish("OB", "beta", "Biologia", "biology", seats=5, minimum=1, start=date(2026, 9, 1))
    n.publish("OG", "gamma", "Geometria", "mathematics", seats=5, minimum=1, start=date(2026, 10, 5))
    for eid, oid, home in (
        ("a1", "OA", "alpha"),
        ("g1", "OA", "gamma"),
        ("b1", "OB", "beta"),
        ("b3", "OB", "beta"),
        ("g2", "OB", "gamma"),
        ("a2", "OG", "alpha"),
        ("b2", "OG", "beta"),
    ):
        n.enrol(eid, oid, home)
        n.confirm(eid)
    n.complete("a1", "passed", credits="3.0", grade="9")
    n.complete("g1", "failed", grade="4")
    n.complete("b1", "passed", credits="3.0", grade="8")
    n.complete("b3", "interrupted")
    n.complete("g2", "failed", grade="5")
    n.complete("a2", "interrupted")
    n.withdraw("b2", late=True)
    for cid, eid, amount, charged in (
        ("cg1", "g1", "120.00", "120.00"),  # gamma pays alpha
        ("cg2", "g2", "110.00", "110.00"),  # gamma pays beta
        ("ca2", "a2", "80.00", "80.00"),  # alpha pays gamma
        ("cb2", "b2", "90.00", "45.00"),  # beta pays gamma (late withdrawal: half)
    ):
        n.commit(cid, eid, amount)
        n.accept(cid)
        n.chargeable(cid, charged)
    n.invoice("inv1", "alpha", "gamma", "120.00", ["cg1"], at=datetime(2026, 11, 2, 9, 0, tzinfo=UTC))
    n.invoice("inv2", "gamma", "beta", "45.00", ["cb2"], at=datetime(2026, 11, 2, 9, 5, tzinfo=UTC))
    n.invoice("inv3", "beta", "gamma", "110.00", ["cg2"], at=datetime(2026, 11, 2, 9, 10, tzinfo=UTC))
    return n


@pytest.fixture(scope="module", params=DB_KINDS)
async def engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[AsyncEngine]:
    """One fed database per kind for the whole module: every test here only reads."""
    async with reporting_engine(
        str(request.param), tmp_path_factory.mktemp("reporting_auth"), "reporting_auth"
    ) as engine:
        await feed(engine, network().events)
        yield engine


@pytest.fixture(scope="module")
async def client(engine: AsyncEngine) -> AsyncIterator[httpx.AsyncClient]:
    """No token unless a test sends one."""
    async with client_of(app_on(build_api, Settings, engine), "/api/reports", {}) as client:
        yield client


def as_(role: str, institution: str | None = None) -> dict[str, str]:
    if role == "student":
        return bearer("student", institution or "alpha", learner_id="1.2.246.562.24.00000000001")
    if role in ("counsellor", "provider_staff", "finance"):
        return bearer(role, institution or "alpha")
    return bearer(role)


ALPHA_COUNSELLOR = as_("counsellor", "alpha")
BETA_COUNSELLOR = as_("counsellor", "beta")
ALPHA_FINANCE = as_("finance", "alpha")
ALPHA_STAFF = [as_(role, "alpha") for role in ("counsellor", "provider_staff", "finance")]


async def get(client: httpx.AsyncClient, path: str, headers: dict[str, str], **params: str) -> httpx.Response:
    return await client.get(path, params={"academic_year": YEAR, **params}, headers=headers)


async def ok(client: httpx.AsyncClient, path: str, headers: dict[str, str], **params: str) -> dict[str, Any]:
    response = await get(client, path, headers, **params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def csv_rows(
    client: httpx.AsyncClient, path: str, headers: dict[str, str], **params: str
) -> list[dict[str, str]]:
    response = await get(client, path, headers, format="csv", **params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(response.content.decode("utf-8"))))


def by(items: list[dict[str, Any]], key: str) -> dict[Any, dict[str, Any]]:
    return {item[key]: item for item in items}


# --- the matrix -----------------------------------------------------------------------------------


def matrix_rows() -> list[dict[str, str]]:
    with (ROOT / "tests" / "authz" / "matrix.csv").open(encoding="utf-8") as f:
        return [row for row in csv.DictReader(f) if row["service"] == "reports"]


async def test_every_report_and_role_answers_as_the_authorisation_matrix_says(client: httpx.AsyncClient) -> None:
    rows = matrix_rows()
    assert {row["path"] for row in rows} == {*REPORTS[:4], "/follow-up/{institution_id}"}
    assert len(rows) == 5 * 8
    wrong = []
    for row in rows:
        role = row["role"]
        headers = {} if role == "anonymous" else as_(role, "alpha")
        for side in ("own", "other"):
            params: dict[str, str] = {}
            # own: the caller's institution (alpha); other: beta, by the path or by a filter naming it
            if row["path"] == "/follow-up/{institution_id}":
                path = f"/follow-up/{'alpha' if side == 'own' else 'beta'}"
            elif side == "own":
                path = row["path"]
            else:
                path = row["path"]
                params = {"institution": "beta"} if path == "/billing" else {"provider": "beta"}
            response = await get(client, path, headers, **params)
            if response.status_code != STATUS[row[side]]:
                wrong.append((path, role, side, row[side], response.status_code))
            if response.status_code >= 400:
                assert response.headers["content-type"] == "application/problem+json", (path, role)
                assert response.json()["status"] == response.status_code
    assert wrong == []


@pytest.mark.parametrize("path", REPORTS)
async def test_anonymous_and_bad_tokens_get_401_problem_details_before_any_validation(
    client: httpx.AsyncClient, path: str
) -> None:
    for headers in ({}, {"Authorization": "Bearer not-a-jwt"}, {"Authorization": "Basic dXNlcjpwYXNz"}):
        response = await client.get(path, params={"format": "pdf", "page_size": "0"}, headers=headers)
        assert response.status_code == 401, (path, headers, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.json()["detail"]


@pytest.mark.parametrize("role", ["student", "operations"])
async def test_students_and_operations_staff_read_no_report_in_any_format(client: httpx.AsyncClient, role: str) -> None:
    for path in REPORTS:
        for fmt in ("json", "csv", "xlsx"):
            response = await get(client, path, as_(role, "alpha"), format=fmt)
            assert response.status_code == 403, (path, fmt, response.text)
            assert response.headers["content-type"] == "application/problem+json"


async def test_openapi_lists_401_403_and_404_where_they_can_happen(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    for path in ("/participants", "/completions", "/billing", "/supply-demand"):
        responses = paths[f"/api/reports{path}"]["get"]["responses"]
        assert {"200", "401", "403"} <= set(responses), path
        assert "application/problem+json" in responses["401"]["content"]
    follow = paths["/api/reports/follow-up/{institution_id}"]["get"]["responses"]
    assert {"200", "401", "403", "404"} <= set(follow)


# --- participants ---------------------------------------------------------------------------------


async def test_the_network_admin_sees_every_offering_in_full(client: httpx.AsyncClient) -> None:
    body = await ok(client, "/participants", ADMIN)
    items = by(body["items"], "offering_id")
    assert set(items) == {"OA", "OB", "OG"} and body["scope"] is None
    assert set(items["OG"]["by_home_institution"]) == {"alpha", "beta"}
    assert (items["OG"]["requests"], body["totals"]["requests"]) == (2, 7)


@pytest.mark.parametrize("staff", ALPHA_STAFF, ids=["counsellor", "provider_staff", "finance"])
async def test_staff_see_their_own_offerings_whole_and_only_their_students_in_others(
    client: httpx.AsyncClient, staff: dict[str, str]
) -> None:
    body = await ok(client, "/participants", staff)
    assert [item["offering_id"] for item in body["items"]] == ["OA", "OG"]  # never beta's OB
    oa, og = body["items"]
    assert set(oa["by_home_institution"]) == {"alpha", "gamma"}  # its own offering: every participant
    assert (oa["requests"], oa["completed"]) == (2, 2)
    assert set(og["by_home_institution"]) == {"alpha"}  # gamma's offering: alpha's student only, not beta's b2
    assert (og["requests"], og["withdrawn_late"], og["completed"]) == (1, 0, 1)
    assert (body["total"], body["totals"]["requests"], body["scope"]) == (2, 3, "alpha")
    assert "beta" not in str(body)


async def test_the_other_institution_sees_the_mirror_image(client: httpx.AsyncClient) -> None:
    body = await ok(client, "/participants", BETA_COUNSELLOR)
    items = by(body["items"], "offering_id")
    assert set(items) == {"OB", "OG"}
    assert (items["OB"]["requests"], set(items["OB"]["by_home_institution"])) == (3, {"beta", "gamma"})
    assert (items["OG"]["requests"], set(items["OG"]["by_home_institution"])) == (1, {"beta"})
    assert items["OG"]["withdrawn_late"] == 1
    assert "alpha" not in str(body)


async def test_participants_as_csv_and_xlsx_carry_the_same_scoped_rows(client: httpx.AsyncClient) -> None:
    rows = await csv_rows(client, "/participants", ALPHA_COUNSELLOR)
    assert [(r["offering_id"], r["provider_id"], r["held"]) for r in rows] == [
        ("OA", "alpha", "2"),
        ("OG", "gamma", "1"),
    ]
    assert rows[1]["by_home_institution"] == "alpha: held 1, completed 1"
    response = await get(client, "/participants", ALPHA_COUNSELLOR, format="csv")
    assert "beta" not in response.text and "OB" not in response.text
    admin_rows = await csv_rows(client, "/participants", ADMIN)
    assert [r["offering_id"] for r in admin_rows] == ["OA", "OB", "OG"]  # the same export is not empty for admin
    xlsx = await client.get(
        "/participants", params={"academic_year": YEAR}, headers={**ALPHA_COUNSELLOR, "Accept": XLSX}
    )
    sheet = openpyxl.load_workbook(io.BytesIO(xlsx.content)).active
    assert [sheet.cell(row=r, column=1).value for r in range(2, sheet.max_row + 1)] == ["OA", "OG"]


async def test_participants_per_home_institution_only_lines_the_institution_is_party_to(
    client: httpx.AsyncClient,
) -> None:
    mine = by(
        (await ok(client, "/participants", ALPHA_COUNSELLOR, group_by="home_institution"))["items"],
        "home_institution_id",
    )
    assert set(mine) == {"alpha", "gamma"}  # alpha's students elsewhere; gamma's students in alpha's courses
    assert (mine["alpha"]["requests"], mine["gamma"]["requests"]) == (1, 1)
    everyone = by(
        (await ok(client, "/participants", ADMIN, group_by="home_institution"))["items"], "home_institution_id"
    )
    assert (set(everyone), everyone["gamma"]["requests"]) == ({"alpha", "beta", "gamma"}, 2)


async def test_filters_naming_another_institution_never_widen_the_scope(client: httpx.AsyncClient) -> None:
    assert (await ok(client, "/participants", ALPHA_COUNSELLOR, provider="beta"))["items"] == []
    assert (await ok(client, "/participants", ALPHA_COUNSELLOR, home_institution="beta"))["items"] == []
    assert (await ok(client, "/participants", ALPHA_COUNSELLOR, offering_id="OB"))["items"] == []
    empty = await ok(client, "/completions", ALPHA_COUNSELLOR, home_institution="beta")
    assert empty["items"] == [] and empty["totals"]["enrolments"] == 0
    assert await csv_rows(client, "/participants", ALPHA_COUNSELLOR, provider="beta") == []
    # gamma's offering through a filter: still only alpha's student in it
    og = await ok(client, "/participants", ALPHA_COUNSELLOR, provider="gamma")
    assert [(i["offering_id"], i["requests"], list(i["by_home_institution"])) for i in og["items"]] == [
        ("OG", 1, ["alpha"])
    ]
    # gamma's students through a filter: only those in alpha's offering
    gamma_students = await ok(client, "/participants", ALPHA_COUNSELLOR, home_institution="gamma")
    assert [(i["offering_id"], i["requests"]) for i in gamma_students["items"]] == [("OA", 1)]


# --- completions ----------------------------------------------------------------------------------


@pytest.mark.parametrize("staff", ALPHA_STAFF, ids=["counsellor", "provider_staff", "finance"])
async def test_completions_count_only_enrolments_the_institution_is_party_to(
    client: httpx.AsyncClient, staff: dict[str, str]
) -> None:
    per_offering = await ok(client, "/completions", staff)
    assert [(i["offering_id"], i["passed"], i["failed"], i["interrupted"]) for i in per_offering["items"]] == [
        ("OA", 1, 1, 0),
        ("OG", 0, 0, 1),
    ]
    totals = per_offering["totals"]
    assert (totals["enrolments"], totals["completed"], totals["credits_earned"]) == (3, 3, "3.0")
    per_home = by(
        (await ok(client, "/completions", staff, group_by="home_institution"))["items"], "home_institution_id"
    )
    assert set(per_home) == {"alpha", "gamma"}
    assert (per_home["alpha"]["enrolments"], per_home["gamma"]["enrolments"]) == (2, 1)  # not gamma's g2 at beta
    per_subject = by((await ok(client, "/completions", staff, group_by="subject"))["items"], "subject")
    assert set(per_subject) == {"mathematics"}
    rows = await csv_rows(client, "/completions", staff, group_by="provider")
    assert [(r["provider_id"], r["enrolments"], r["completion_rate"]) for r in rows] == [
        ("alpha", "2", "0.5000"),
        ("gamma", "1", "0.0000"),
    ]


async def test_partners_read_network_wide_completions_without_any_personal_data(client: httpx.AsyncClient) -> None:
    partner = as_("partner")
    for group in ("offering", "provider", "home_institution", "subject", "academic_year"):
        theirs = await ok(client, "/completions", partner, group_by=group)
        assert theirs == await ok(client, "/completions", ADMIN, group_by=group), group
        assert theirs["scope"] is None
        text = str(theirs)
        for personal in ("student_ref", "ref-", "enrolment_id", "learner", "grade"):
            assert personal not in text, (group, personal)
    assert (await ok(client, "/completions", partner))["totals"]["enrolments"] == 7
    rows = await csv_rows(client, "/completions", partner, group_by="home_institution")
    assert [r["home_institution_id"] for r in rows] == ["alpha", "beta", "gamma"]
    for path in ("/participants", "/billing", "/follow-up/alpha"):
        assert (await get(client, path, partner)).status_code == 403, path


# --- billing --------------------------------------------------------------------------------------


async def test_finance_sees_only_its_own_institutions_billing_line_and_totals(client: httpx.AsyncClient) -> None:
    body = await ok(client, "/billing", ALPHA_FINANCE)
    assert [item["institution_id"] for item in body["items"]] == ["alpha"]
    alpha = body["items"][0]
    assert (alpha["as_provider"]["committed"], alpha["as_provider"]["invoiced"]) == ("120.00", "120.00")
    assert (alpha["as_home"]["committed"], alpha["as_home"]["chargeable"], alpha["as_home"]["invoiced"]) == (
        "80.00",
        "80.00",
        "0.00",
    )
    assert (body["totals"]["committed"], body["totals"]["invoiced"], body["totals"]["commitments"]) == (
        "200.00",
        "120.00",
        2,
    )
    admin = by((await ok(client, "/billing", ADMIN))["items"], "institution_id")
    assert set(admin) == {"alpha", "beta", "gamma"} and admin["alpha"] == alpha
    assert (await ok(client, "/billing", ADMIN))["totals"]["committed"] == "400.00"
    own = await ok(client, "/billing", ALPHA_FINANCE, institution="alpha")
    assert (own["items"], own["totals"]) == (body["items"], body["totals"])
    rows = await csv_rows(client, "/billing", ALPHA_FINANCE)
    assert [(r["institution_id"], r["as_provider_committed"], r["as_home_committed"]) for r in rows] == [
        ("alpha", "120.00", "80.00")
    ]
    beta = await ok(client, "/billing", as_("finance", "beta"))
    assert [item["institution_id"] for item in beta["items"]] == ["beta"]
    assert beta["items"][0] == admin["beta"] and beta["totals"]["committed"] == "200.00"


async def test_finance_asking_for_another_institutions_billing_gets_nothing_of_it(client: httpx.AsyncClient) -> None:
    body = await ok(client, "/billing", ALPHA_FINANCE, institution="gamma")
    assert body["items"] == [] and body["total"] == 0
    assert (body["totals"]["committed"], body["totals"]["invoiced"], body["totals"]["commitments"]) == (
        "0.00",
        "0.00",
        0,
    )
    assert await csv_rows(client, "/billing", ALPHA_FINANCE, institution="gamma") == []


@pytest.mark.parametrize("role", ["counsellor", "provider_staff", "partner", "operations", "student"])
async def test_billing_is_for_finance_and_the_network_admin_only(client: httpx.AsyncClient, role: str) -> None:
    response = await get(client, "/billing", as_(role, "alpha"), format="csv")
    assert response.status_code == 403 and "finance" in response.json()["detail"]


# --- supply and demand ----------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["counsellor", "provider_staff", "finance", "partner"])
async def test_supply_and_demand_is_the_same_network_aggregate_for_every_reader(
    client: httpx.AsyncClient, role: str
) -> None:
    theirs = await ok(client, "/supply-demand", as_(role, "alpha"))
    assert theirs == await ok(client, "/supply-demand", ADMIN)
    assert {item["subject"] for item in theirs["items"]} == {"mathematics", "biology"}
    assert theirs["totals"]["requests"] == 7


# --- follow-up ------------------------------------------------------------------------------------


async def test_counsellors_follow_up_their_own_students_only(client: httpx.AsyncClient) -> None:
    alpha = await ok(client, "/follow-up/alpha", ALPHA_COUNSELLOR)
    assert [(i["enrolment_id"], i["reason"]) for i in alpha["items"]] == [("a2", "interrupted")]
    rows = await csv_rows(client, "/follow-up/alpha", ALPHA_COUNSELLOR)
    assert [r["student_ref"] for r in rows] == ["ref-a2"]
    beta = await ok(client, "/follow-up/beta", BETA_COUNSELLOR)
    assert [i["enrolment_id"] for i in beta["items"]] == ["b2", "b3"]
    admin = await ok(client, "/follow-up/gamma", ADMIN)
    assert [i["enrolment_id"] for i in admin["items"]] == ["g2", "g1"]


async def test_another_institutions_follow_up_is_hidden_whether_it_exists_or_not(client: httpx.AsyncClient) -> None:
    answers = []
    for target in ("beta", "gamma", "no-such-school"):
        for fmt in ("json", "csv", "xlsx"):
            response = await get(client, f"/follow-up/{target}", ALPHA_COUNSELLOR, format=fmt)
            assert response.status_code == 404, (target, fmt)
            assert response.headers["content-type"] == "application/problem+json"
            assert "ref-" not in response.text
            answers.append(response.json()["detail"].replace(target, "X"))
    assert len(set(answers)) == 1  # the same answer for a real school and an unknown one
    assert (await get(client, "/follow-up/no-such-school", ADMIN)).status_code == 404


@pytest.mark.parametrize("role", ["provider_staff", "finance", "partner", "operations", "student"])
async def test_only_counsellors_and_the_admin_read_follow_up(client: httpx.AsyncClient, role: str) -> None:
    for target in ("alpha", "beta"):
        assert (await get(client, f"/follow-up/{target}", as_(role, "alpha"))).status_code == 403, (role, target)
