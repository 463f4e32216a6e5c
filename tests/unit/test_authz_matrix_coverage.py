"""Every route of the public API has a row in the authorisation matrix for every role, and every row names a route.

The routes are read from each service's OpenAPI, built in-process (no database is opened): a new route
without rows in `tests/authz/matrix.csv` fails here, before anyone forgets to decide who may call it.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from tests.authz import OUTCOMES, PREFIXES, ROLES, Row, load_matrix, route_shape
from tests.authz.requests import BUILDERS

OPS = frozenset({"/health", "/ready", "/metrics", "/openapi.json", "/docs"})
METHODS = frozenset({"get", "post", "put", "patch", "delete"})
# A role that must sign in sees the same answer for its own institution and another's (it never gets that far).
UNIFORM = frozenset({"unauthenticated"})
PUBLIC = frozenset({"allow", "unauthenticated"})


def build(service: str, url: str) -> FastAPI:
    if service == "catalogue":
        from services.catalogue.app import build_api as catalogue_api
        from services.catalogue.settings import Settings as CatalogueSettings

        return catalogue_api(CatalogueSettings(database_url=url))
    if service == "enrolments":
        from services.enrolment.app import build_api as enrolment_api
        from services.enrolment.settings import Settings as EnrolmentSettings

        return enrolment_api(EnrolmentSettings(database_url=url))
    if service == "billing":
        from services.billing.app import build_api as billing_api
        from services.billing.settings import Settings as BillingSettings

        return billing_api(BillingSettings(database_url=url))
    from services.reporting.app import build_api as reporting_api
    from services.reporting.settings import Settings as ReportingSettings

    return reporting_api(ReportingSettings(database_url=url))


@pytest.fixture(scope="module")
def routes(tmp_path_factory: pytest.TempPathFactory) -> set[tuple[str, str, str]]:
    """(service, METHOD, path shape) of every public route, the path relative to the service's prefix."""
    found: set[tuple[str, str, str]] = set()
    directory: Path = tmp_path_factory.mktemp("authz-openapi")
    for service, prefix in PREFIXES.items():
        spec: dict[str, Any] = build(service, f"sqlite+aiosqlite:///{directory / service}.db").openapi()
        for path, operations in spec["paths"].items():
            assert path.startswith(prefix), f"{service} serves {path} outside its prefix {prefix}"
            relative = path[len(prefix) :] or "/"
            if relative in OPS:
                continue
            for method in operations.keys() & METHODS:
                found.add((service, method.upper(), route_shape(relative)))
    assert found, "no routes found in any OpenAPI"
    return found


@pytest.fixture(scope="module")
def matrix() -> list[Row]:
    return load_matrix()


def test_every_route_has_a_row_for_every_role(routes: set[tuple[str, str, str]], matrix: list[Row]) -> None:
    covered = {(row.route.shape, row.role) for row in matrix}
    missing = sorted(
        f"{service},{method},{path},{role}"
        for service, method, path in routes
        for role in ROLES
        if ((service, method, path), role) not in covered
    )
    assert not missing, "routes without rows in tests/authz/matrix.csv:\n" + "\n".join(missing)


def test_every_row_names_an_existing_route(routes: set[tuple[str, str, str]], matrix: list[Row]) -> None:
    stale = sorted({str(row.route) for row in matrix if row.route.shape not in routes})
    assert not stale, "matrix rows for routes no service serves:\n" + "\n".join(stale)


def problems_of(row: Row) -> list[str]:
    outcomes = {row.own, row.other}
    checks = (
        (f"unknown service {row.route.service!r}", row.route.service not in PREFIXES),
        (f"unknown role {row.role!r}", row.role not in ROLES),
        (f"unknown outcome {row.own!r}/{row.other!r}", not outcomes <= OUTCOMES),
        ("the path must start with /", not row.route.path.startswith("/")),
        ("unauthenticated must not depend on the target", bool(outcomes & UNIFORM) and row.own != row.other),
        ("an anonymous caller is allowed or unauthenticated", row.role == "anonymous" and not outcomes <= PUBLIC),
        ("only an anonymous caller is unauthenticated", row.role != "anonymous" and "unauthenticated" in outcomes),
    )
    return [f"{row.test_id('own')}: {what}" for what, bad in checks if bad]


def test_rows_are_well_formed_and_unique(matrix: list[Row]) -> None:
    problems = [problem for row in matrix for problem in problems_of(row)]
    assert not problems, "\n".join(problems)
    duplicates = [key for key, n in Counter((row.route.shape, row.role) for row in matrix).items() if n > 1]
    assert not duplicates, f"rows given twice: {duplicates}"


def test_every_route_of_the_matrix_has_a_request_builder(matrix: list[Row]) -> None:
    missing = sorted({str(row.route) for row in matrix if row.route.shape not in BUILDERS})
    assert not missing, "no request builder in tests/authz/requests.py for:\n" + "\n".join(missing)
