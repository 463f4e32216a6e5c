"""scripts/tarjotin.sh refuses a process the gateway would not know about, before starting anything.

Starting the processes it accepts is what the end-to-end system does (tests/support/system.py runs `up` with
one reporting reader and the chaos test restarts `reporting reader1`); these are the refusals.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support.system import run_tarjotin, script_ports


def run_script(tmp_path: Path, readers: str | None, *args: str, db: str = "sqlite") -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "TARJOTIN_RUN_DIR": str(tmp_path / "run"),
        "TARJOTIN_DATA_DIR": str(tmp_path / "data"),
        "TARJOTIN_DB": db,
        "TARJOTIN_REPORTING_READERS": readers or "",
    }
    if readers is None:
        del env["TARJOTIN_REPORTING_READERS"]
    return run_tarjotin(env, *args, timeout=30)


@pytest.mark.parametrize(
    ("readers", "reader", "message"),
    [
        ("0", "reader1", "TARJOTIN_REPORTING_READERS is 0"),
        ("1", "reader2", "TARJOTIN_REPORTING_READERS is 1"),
        ("4", "reader5", "TARJOTIN_REPORTING_READERS is 4"),
    ],
)
def test_a_reader_beyond_the_configured_number_is_refused(
    tmp_path: Path, readers: str, reader: str, message: str
) -> None:
    result = run_script(tmp_path, readers, "start", "reporting", reader)
    assert result.returncode == 1, result.stderr
    assert f"{reader} is not in the gateway's reporting upstream" in result.stderr
    assert message in result.stderr
    assert not (tmp_path / "run" / "pids").exists(), "nothing may be started"


@pytest.mark.parametrize(("db", "default"), [("sqlite", 1), ("postgres", 0)])
def test_the_default_number_of_readers_depends_on_the_database(tmp_path: Path, db: str, default: int) -> None:
    """One reader on SQLite (reports' SQL runs in the API process), none on PostgreSQL (decision 004)."""
    reader = f"reader{default + 1}"
    result = run_script(tmp_path, None, "start", "reporting", reader, db=db)
    assert result.returncode == 1, result.stderr
    assert (
        f"{reader} is not in the gateway's reporting upstream: TARJOTIN_REPORTING_READERS is {default}" in result.stderr
    )


def test_readers_belong_to_reporting(tmp_path: Path) -> None:
    result = run_script(tmp_path, "1", "start", "catalogue", "reader1")
    assert result.returncode == 1
    assert "readers are reporting's" in result.stderr
    assert not (tmp_path / "run" / "pids").exists()


@pytest.mark.parametrize("readers", ["x", "5", "-1", "1 2"])
def test_the_number_of_readers_is_validated(tmp_path: Path, readers: str) -> None:
    result = run_script(tmp_path, readers, "status")
    assert result.returncode == 2
    assert "TARJOTIN_REPORTING_READERS must be a number from 0 to 4" in result.stderr


@pytest.mark.parametrize("nice", ["x", "20", "-1", "1 2"])
def test_the_reporting_workers_priority_is_validated(
    tmp_path: Path, nice: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TARJOTIN_REPORTING_WORKER_NICE", nice)
    result = run_script(tmp_path, None, "status")
    assert result.returncode == 2
    assert "TARJOTIN_REPORTING_WORKER_NICE must be a number from 0 to 19" in result.stderr


def test_only_a_process_that_serves_http_can_be_waited_for(tmp_path: Path) -> None:
    """`start SERVICE ROLE --wait` waits for the process's own /ready; a split worker has none."""
    result = run_script(tmp_path, None, "start", "enrolment", "worker", "--wait", db="postgres")
    assert result.returncode == 1, result.stderr
    assert "enrolment worker serves no HTTP: there is no /ready to wait for" in result.stderr
    assert not (tmp_path / "run" / "pids").exists(), "nothing may be started"


@pytest.mark.parametrize("args", [("enrolment", "api", "--later"), ("nosuch", "api", "--wait")])
def test_start_refuses_what_it_does_not_know_before_starting(tmp_path: Path, args: tuple[str, ...]) -> None:
    result = run_script(tmp_path, None, "start", *args)
    assert result.returncode == 1, result.stderr
    assert ("not --later" if args[2] == "--later" else "unknown service nosuch") in result.stderr
    assert not (tmp_path / "run" / "pids").exists(), "nothing may be started"


def test_ports_prints_the_layout_up_uses_and_the_test_systems_read_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One place knows which port each part gets: the script; tests/support/system.py and the bench ask it."""
    monkeypatch.setenv("TARJOTIN_PORT_BASE", "9000")
    monkeypatch.setenv("TARJOTIN_GATEWAY_PORT", "9100")
    printed = run_script(tmp_path, "2", "ports")
    assert printed.returncode == 0, printed.stderr
    expected = {
        "gateway": 9100,
        "issuer": 9005,
        "catalogue": 9001,
        "enrolment": 9002,
        "billing": 9003,
        "reporting": 9004,
        "reader1": 9006,
        "reader2": 9007,
    }
    assert printed.stdout.split() == [str(item) for pair in expected.items() for item in pair]
    assert script_ports({**os.environ, "TARJOTIN_REPORTING_READERS": "2"}) == expected
    without_readers = run_script(tmp_path, None, "ports", db="postgres").stdout.split()
    assert "reader1" not in without_readers and without_readers[:2] == ["gateway", "9100"]
