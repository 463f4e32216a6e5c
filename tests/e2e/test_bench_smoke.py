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
    written_json = json.loads(written.read_text())
    result = written_json["results"][0]
    assert written_json["machine"]["cores"] >= 1 and written_json["machine"]["python_yardstick_s"] > 0
    assert "Python yardstick" in done.stdout
    assert result["floor"]["ok"] is True and result["floor_after"]["ok"] is True
    floors = (result["floor"]["e2e_per_s"] + result["floor_after"]["e2e_per_s"]) / 2
    assert result["ratio_to_floor"] == round(result["system"]["e2e_per_s"] / floors, 2)
    assert "floor after" in done.stdout
    system = result["system"]
    assert system["completed"] == system["accepted"] == system["n"] > 0
    # Where the machine's CPU went (in clock ticks of 10 ms: the gateway's share of 60 requests may round to 0).
    assert all(system["cpu_s"][name] > 0 for name in ("enrolment-all", "billing-all", "reporting-all")), system
    assert system["cpu_s"]["gateway"] >= 0
    assert system["cpu_shared_s"]["rabbitmq"] > 0 and system["machine_cpu_per_enrolment_ms"] > 0
    assert "flat out, the machine's CPU ms per enrolment: " in done.stdout
    # The floor's CPU beyond a run of 10 requests (its start and stop). With the smoke's 60 requests that
    # difference (0.14–0.17 s) is inside the start-up's own spread (3.54–3.98 s seen), so it may come out
    # at or below zero here: only its parts are checked; the arithmetic is tests/unit/test_bench_figures.py's.
    floor_cpu = result["floor"]["cpu_per_completion_ms"]
    assert set(floor_cpu) == {"floor", "rabbitmq", "postgresql", "all"}
    assert floor_cpu["all"] == round(sum(v for k, v in floor_cpu.items() if k != "all"), 2)
    assert result["floor_startup"]["ok"] is True and "CPU ms per completion beyond start-up" in done.stdout
    assert system["e2e_per_s"] > 0 and result["ratio_to_floor"] > 0
    assert [run["rate"] for run in result["system_rates"]] == [100.0]
    # The fixed rate runs twice in a smoke run; the table shows the run with the better → confirmed p99.
    repeats = result["system_rates"][0]["repeats"]
    assert len(repeats) == 2 and all(r["completed"] == r["accepted"] == r["n"] > 0 for r in repeats)
    assert result["system_rates"][0]["confirmed_p99_ms"] == min(r["confirmed_p99_ms"] for r in repeats)
    assert all(0 < r["busy_pct"] <= 100 for r in repeats) and "confirmed p99 of each run" in done.stdout
    assert "system flat" in done.stdout and "floor 200/s" in done.stdout
    one = result["system_one_offering"]  # the worst case: every request for the same offering
    assert one["completed"] == one["accepted"] == one["n"] > 0 and "1 offering flat" in done.stdout
    # Per hop (bench/hops.py): every event of the saga, staged → handled by each consumer, from the databases.
    hops = {(h["hop"], h["producer"], h["event"], h["consumer"]): h for h in result["system_rates"][0]["hops"]}
    for producer, event, consumer in (
        ("enrolment", "enrolment.requested", "billing"),
        ("billing", "commitment.accepted", "enrolment"),
        ("enrolment", "enrolment.confirmed", "reporting"),
    ):
        hop = hops[("handled", producer, event, consumer)]
        assert hop["n"] == 50 and 0 < hop["p50_ms"] <= hop["p99_ms"], hop
    assert "per hop" in done.stdout

    # The read paths of issue 5 (bench/latency.py), at tiny sizes: figures present and positive, not timings.
    search = result["latency"]["search"]
    assert search["published"] > 0 and search["imports"] and search["errors"] == 0
    assert search["n"] == 40 and 0 < search["p50_ms"] <= search["p99_ms"]
    assert search["sequential"]["n"] == 40 and search["sequential"]["cpu_ms_per_request"] > 0
    assert search["uncached"]["n"] > 0 and search["uncached"]["p99_ms"] > 0
    assert {"browse", "words_fi", "facets"} <= set(search["kinds"])
    assert any(kind.get("mean_hits", 0) > 0 for kind in search["kinds"].values())
    reports = result["latency"]["reports"]
    assert [size["enrolments"] for size in reports["sizes"]] == [1000, 2000]
    for size in reports["sizes"]:
        assert size["errors"] == 0 and 0 < size["p50_ms"] <= size["p99_ms"]
        assert size["rows"]["offering_home_counts"] > 0 and size["rows"]["invoices"] > 0
        assert set(size["endpoints"]) == {"participants", "completions", "billing", "supply-demand", "follow-up"}
        assert all(endpoint["p99_ms"] > 0 for endpoint in size["endpoints"].values())
    assert set(reports["p99_ratio_largest_to_smallest"]) >= {"participants", "follow-up", "overall"}
    assert "first of each filter set" in done.stdout and "reports, 2,000 enrolments" in done.stdout

    # The targets beside this run's figures (bench/targets.py): every one measured, met or not.
    targets = [(t["db"], t["target"].split(",")[0]) for t in written_json["targets"]]
    assert targets == [
        ("sqlite", "sustained end to end"),
        ("sqlite", "system / floor"),
        ("sqlite", "system / floor (the aim)"),
        ("sqlite", "request → confirmed p99 at 100/s"),
        ("sqlite", "search p99"),
        ("sqlite", "reports p99"),
        ("sqlite", "reports p99"),
        ("sqlite", "reports flat: p99 largest / smallest"),
    ]
    assert "performance targets, on this run" in done.stdout and "\ntargets met: " in done.stdout


def run_toggle(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench.toggle", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def test_the_toggle_bench_runs_with_a_process_killed_and_alive_in_one_system() -> None:
    done = run_toggle("reporting", "reader1", "--runs", "2", "--n", "40")
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-2000:]
    *rows, means = [json.loads(line) for line in done.stdout.splitlines()]
    assert [row["process"] for row in rows] == ["killed", "alive"]
    assert all(row["completed"] == row["accepted"] == 40 and row["e2e_per_s"] > 0 for row in rows)
    assert "reporting-reader1" not in rows[0]["cpu_s"]  # killed: not measured
    assert set(means) == {"killed", "alive"} and all(rate > 0 for rate in means.values())


def test_the_toggle_bench_refuses_a_process_the_system_does_not_have() -> None:
    done = run_toggle("reporting", "reader3", "--runs", "2", "--n", "10")
    assert done.returncode == 1 and "reporting reader3 is not one of this system's processes" in done.stderr
