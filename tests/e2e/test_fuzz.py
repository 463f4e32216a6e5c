"""Property-based fuzzing of the four services' OpenAPI documents, through the gateway (schemathesis).

Each service's document is read from the gateway (`/api/<prefix>/openapi.json`) and every operation in
it gets schemathesis' coverage cases (boundaries, missing, wrong-typed and unexpected values) and a
bounded number of generated requests, valid and invalid, sent through the gateway with a valid token:
as the network admin (everything is allowed, so requests reach the handlers), then as a counsellor of one
institution (the authorization paths). Identifiers are drawn half of the time from a small seeded data
set (an enrolment with its commitment, its offering, course and institutions), so that requests reach
existing resources instead of stopping at 404. Every answer must not be a server error and must match
the documented schema of its status code.

The runs are seeded (the same requests every time) and do not shrink: a failure is reported with the
first request that showed it, as `curl` (token filtered) in the assertion message. The schemathesis CLI
runs as a subprocess (its pytest integration does not support pytest 9 yet). The file takes a few minutes
on two cores; `TARJOTIN_FUZZ_EXAMPLES` sets the generated requests per operation (default 25).

Errors are documented as application/problem+json (`shared.http.document_problems`), so the content
type of every answer is checked too.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.auth import bearer
from tests.support.infra import eventually
from tests.support.system import Network, System

pytestmark = pytest.mark.e2e

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
PREFIXES = ("catalogue", "enrolments", "billing", "reports")
EXAMPLES = int(os.environ.get("TARJOTIN_FUZZ_EXAMPLES", "25"))
SEED = 20260601
CHECKS = "not_a_server_error,response_schema_conformance,content_type_conformance"
# Prometheus text exposition: takes no input, nothing to fuzz.
EXCLUDE_PATH_REGEX = "/metrics$"

# Where each kind of seeded identifier may go (schemathesis parameter bindings: location.name).
BINDINGS = {
    "institutions": [
        "path.institution_id",
        "query.institution_id",
        "query.institution",
        "query.provider",
        "query.provider_id",
        "query.home_institution",
        "query.home_institution_id",
        "query.payee",
        "query.payer",
        "body.provider_id",
        "body.home_institution_id",
        "body.payee_id",
    ],
    "offerings": ["path.offering_id", "query.offering_id", "body.offering_id"],
    "courses": ["path.course_id", "body.course_id"],
    "enrolments": ["path.enrolment_id", "query.enrolment_id"],
    "students": ["path.student_ref"],
    "commitments": ["path.commitment_id"],
    "years": ["path.academic_year", "query.academic_year"],
}


def toml_value(value: Any) -> str:
    """TOML for the plain values used here (JSON strings are valid TOML basic strings)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)


def config_file(path: Path, *, token: str, max_examples: int, phases: list[str], data: dict[str, list[str]]) -> Path:
    bindings = {key: {"dictionary": name, "probability": 0.5} for name, keys in BINDINGS.items() for key in keys}
    lines = [
        f"seed = {SEED}",
        'suppress-health-check = ["all"]',  # a whole system on a busy machine is "too slow" for Hypothesis
        "workers = 1",
        "request-timeout = 30",
        f"headers = {toml_value({'Authorization': token})}",
        f"parameters = {toml_value(bindings)}",
        "[generation]",
        'mode = "all"',  # valid requests and invalid ones
        f"max-examples = {max_examples}",
        "no-shrink = true",  # the first failing request is reported; shrinking would resend many
        'database = "none"',  # no replay of earlier runs' failures: every run sends the same requests
        "[phases]",
        *(f"{phase}.enabled = {toml_value(phase in phases)}" for phase in ("examples", "coverage", "fuzzing")),
        # Link-following runs are not bounded per operation; the other e2e tests walk the flows.
        "stateful.enabled = false",
    ]
    for name, values in data.items():
        lines += [f"[dictionaries.{name}]", f"values = {toml_value(values)}"]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
async def fuzz_data(system: System) -> dict[str, list[str]]:
    """One enrolment that went through to billing, and what it refers to."""
    async with system.client() as admin:
        net = Network(admin)
        provider, home = await net.institution("fuzzprov", member=True), await net.institution("fuzzhome", member=True)
        offering_id = await net.offering(provider, seats=50)
        offering = (await admin.get(f"/api/catalogue/offerings/{offering_id}")).json()
        enrolled = await net.enrol(offering_id, home, f"fuzz-{net.tag}")
        assert enrolled.status_code == 201, enrolled.text
        enrolment = enrolled.json()

        async def commitment() -> str | None:
            response = await admin.get("/api/billing/commitments", params={"enrolment_id": enrolment["id"]})
            items = response.json()["items"] if response.status_code == 200 else []
            return str(items[0]["id"]) if items else None

        commitment_id = await eventually(commitment, timeout=30)
    return {
        "institutions": [home, provider],
        "offerings": [offering_id],
        "courses": [offering["course_id"]],
        "enrolments": [enrolment["id"]],
        "students": [enrolment["student_ref"]],
        "commitments": [commitment_id],
        "years": [offering["academic_year"]],
    }


def failures_of(report: dict[str, Any], output: str) -> str:
    """The failing operations by kind, then schemathesis' own account (with `curl` to reproduce)."""
    lines = [f"{f['code']} {f['title']}: {op}" for f in report.get("failures", []) for op in f.get("operations", [])]
    lines += [f"error: {json.dumps(e)[:500]}" for e in report.get("errors", [])]
    start = output.find("FAILURES")
    details = output[start:] if start >= 0 else output[-6000:]
    return "\n".join(lines) + "\n\n" + details[:20000]


@pytest.mark.parametrize("caller", ["network_admin", "counsellor"])
@pytest.mark.parametrize("prefix", PREFIXES)
async def test_every_operation_answers_without_server_errors_and_as_documented(
    system: System, fuzz_data: dict[str, list[str]], prefix: str, caller: str, tmp_path: Path
) -> None:
    home = fuzz_data["institutions"][0]
    if caller == "network_admin":
        token = bearer("network_admin", subject="fuzz-admin")
        max_examples, phases = EXAMPLES, ["examples", "coverage", "fuzzing"]
    else:  # mostly refused early: the generated requests are enough to walk the authorization paths
        token = bearer("counsellor", home, subject="fuzz-counsellor")
        max_examples, phases = max(1, EXAMPLES // 3), ["examples", "fuzzing"]
    config = config_file(
        tmp_path / "schemathesis.toml",
        token=token["Authorization"],
        max_examples=max_examples,
        phases=phases,
        data=fuzz_data,
    )
    async with httpx.AsyncClient(base_url=system.url) as client:
        spec = await client.get(f"/api/{prefix}/openapi.json")
        assert spec.status_code == 200 and spec.json()["paths"], spec.text[:500]
    report_path = tmp_path / "report.json"
    process = await asyncio.create_subprocess_exec(
        str(SCHEMATHESIS),
        "--config-file",
        str(config),
        "--no-color",
        "run",
        f"{system.url}/api/{prefix}/openapi.json",
        "--checks",
        CHECKS,
        "--exclude-path-regex",
        EXCLUDE_PATH_REGEX,
        "--report",
        "json",
        "--report-json-path",
        str(report_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=tmp_path,
    )
    try:
        async with asyncio.timeout(900):
            stdout, _ = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    output = stdout.decode(errors="replace")
    assert report_path.exists(), f"schemathesis wrote no report (exit {process.returncode}):\n{output[-6000:]}"
    report = json.loads(report_path.read_text())
    assert report["operations"]["tested"] > 0, output[-6000:]
    assert report["complete"], output[-6000:]
    assert not report["failures"] and not report["errors"] and process.returncode == 0, failures_of(report, output)
