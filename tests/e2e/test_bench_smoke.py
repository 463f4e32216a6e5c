"""A tiny run of `make bench`, so the benchmark harness cannot rot (figures come from `make bench` only)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.infra import ROOT

pytestmark = pytest.mark.e2e


def test_the_benchmark_runs_end_to_end_and_reports_ratios_to_the_floor(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke", "--db", "sqlite", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-2000:]
    [written] = tmp_path.glob("bench-*.json")
    result = json.loads(written.read_text())["results"][0]
    assert result["floor"]["ok"] is True
    system = result["system"]
    assert system["completed"] == system["accepted"] == system["n"] > 0
    assert system["e2e_per_s"] > 0 and result["ratio_to_floor"] > 0
    assert [run["rate"] for run in result["system_rates"]] == [100.0]
    assert "system flat" in done.stdout and "floor 200/s" in done.stdout
