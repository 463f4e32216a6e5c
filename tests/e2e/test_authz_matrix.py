"""The authorisation matrix (tests/authz/matrix.csv), row by row, through the gateway.

Every caller acts for institution A. For each row the request is built twice: against A's own data and
against the same kind of data of B, and the answer must be what the row says:

- `allow`: 2xx;
- `forbidden`: 403 problem+json; `hidden`: 404 problem+json, exactly as if the target did not exist;
- `unauthenticated`: 401 problem+json with a `WWW-Authenticate: Bearer` challenge;
- `filtered`: 200 whose items name nothing of B, asked for B's data by filter and asked with no filter at
  all; the network admin asking the same must see B's data, or the check could not fail.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.authz import SIDES, Row, Side, load_matrix
from tests.authz.requests import CONFIRMED_POOL, PENDING_POOL, Call, Target, build, caller_headers
from tests.authz.world import World, seed
from tests.support.system import System

pytestmark = pytest.mark.e2e

ROWS = load_matrix()
CASES = [pytest.param(row, side, id=row.test_id(side)) for row in ROWS for side in SIDES]
PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
async def admin(system: System) -> AsyncIterator[httpx.AsyncClient]:
    async with system.client() as client:
        yield client


@pytest.fixture(scope="module")
async def anyone(system: System) -> AsyncIterator[httpx.AsyncClient]:
    """A client without a token of its own: each row sends its caller's."""
    async with system.client({}) as client:
        yield client


@pytest.fixture(scope="module")
async def world(admin: httpx.AsyncClient) -> World:
    """One seeded world per system; each pool holds one target per row that takes from it."""
    return await seed(
        admin,
        pending=sum(row.route.shape in PENDING_POOL for row in ROWS),
        confirmed=sum(row.route.shape in CONFIRMED_POOL for row in ROWS),
    )


def describe(call: Call, response: httpx.Response) -> str:
    return f"{call} → {response.status_code} {response.headers.get('content-type')}: {response.text[:500]}"


def assert_problem(call: Call, response: httpx.Response, status: int) -> None:
    assert response.status_code == status, f"expected {status}: {describe(call, response)}"
    assert response.headers.get("content-type", "").startswith(PROBLEM), f"not problem+json: {describe(call, response)}"
    assert response.json().get("status") == status, describe(call, response)


def items_of(response: httpx.Response) -> Any:
    body = response.json()
    return body["items"] if isinstance(body, dict) and "items" in body else body


def named(ids: set[str], data: Any) -> list[str]:
    text = json.dumps(data)
    return sorted(i for i in ids if i in text)


async def assert_filtered(
    anyone: httpx.AsyncClient, token: dict[str, str], admin: httpx.AsyncClient, call: Call, world: World
) -> None:
    """200, and nothing of B, whether B's data is asked for by filter or not at all."""
    other_ids = world.b.ids
    seen_by_admin = named(other_ids, items_of(await call.send(admin)))
    assert seen_by_admin, f"the admin sees nothing of B for {call}, so filtering cannot be checked; seed more"
    for variant in (call, call.unfiltered()):
        response = await variant.send(anyone, token)
        assert response.status_code == 200, f"expected 200: {describe(variant, response)}"
        leaked = named(other_ids, items_of(response))
        assert not leaked, f"{variant} shows B's data {leaked[:5]}: {response.text[:500]}"


@pytest.mark.parametrize(("row", "side"), CASES)
async def test_the_matrix_row_holds(
    anyone: httpx.AsyncClient, admin: httpx.AsyncClient, world: World, row: Row, side: Side
) -> None:
    call = await build(Target(world, admin, row.route, side, row.role))
    expected = row.expected(side)
    token = caller_headers(row.role, world, call.learner_id)
    if expected == "filtered":
        await assert_filtered(anyone, token, admin, call, world)
        return
    before = await call.probe.snapshot(admin) if call.probe else None
    response = await call.send(anyone, token)
    if call.probe:
        after = await call.probe.snapshot(admin)
        if expected == "allow":  # the probe sees a change, so it would see one made by a refused request
            assert after != before, f"{call.probe.url} shows no change: {before}; {describe(call, response)}"
        else:
            assert after == before, (
                f"refused, yet {call.probe.url} changed: {before} → {after}; {describe(call, response)}"
            )
    if expected == "allow":
        assert 200 <= response.status_code < 300, f"expected 2xx: {describe(call, response)}"
        if row.other == "filtered":
            assert named(world.a.ids, items_of(response)), f"filtered so far that A's own data is gone: {call}"
    elif expected == "forbidden":
        assert_problem(call, response, 403)
    elif expected == "hidden":
        assert_problem(call, response, 404)
    elif expected == "unauthenticated":
        assert_problem(call, response, 401)
        challenge = response.headers.get("www-authenticate", "")
        assert challenge.lower().startswith("bearer"), f"no Bearer challenge: {describe(call, response)}"
    else:
        pytest.fail(f"unknown expectation {expected!r} in the matrix")
