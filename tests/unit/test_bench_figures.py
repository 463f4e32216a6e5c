"""The benchmark's own arithmetic: which of repeated fixed-rate runs it reports, the machine's busy share, and
the driver's collector kept out of the timed requests."""

from __future__ import annotations

import asyncio
import gc
import os
from typing import Any

import pytest

from bench.drive import collector_paused, read_response
from bench.latency import Answer, Ask, Pass, merged
from bench.run import REPEAT_FIGURES, floor_cpu_per_completion, median_run, system_runs, table, where_cpu_goes
from bench.system import busy_share, cpu_by_part
from bench.targets import targets_table, verdicts
from bench.toggle import order


def _run(p99: float, tag: str) -> dict[str, Any]:
    return {key: 0 for key in REPEAT_FIGURES} | {"confirmed_p99_ms": p99, "tag": tag, "hops": [tag]}


def test_of_repeated_runs_the_one_with_the_median_tail_is_reported_with_every_run_in_order() -> None:
    runs = [_run(900.0, "slow"), _run(70.0, "fast"), _run(250.0, "middle")]
    reported = median_run(runs)
    assert reported["tag"] == "middle" and reported["hops"] == ["middle"]  # the whole run, hops and all
    assert [r["confirmed_p99_ms"] for r in reported["repeats"]] == [900.0, 70.0, 250.0]
    assert set(reported["repeats"][0]) == set(REPEAT_FIGURES)


def test_of_two_runs_the_better_tail_is_reported_and_one_run_is_itself() -> None:
    assert median_run([_run(300.0, "b"), _run(100.0, "a")])["tag"] == "a"
    only = median_run([_run(42.0, "only")])
    assert only["tag"] == "only" and len(only["repeats"]) == 1


def test_busy_share_counts_everything_but_idle_and_steal_of_the_time_between_readings() -> None:
    # (busy, steal, total) clock ticks: 150 of 200 busy, 10 stolen.
    assert busy_share((1000, 50, 4000), (1150, 60, 4200)) == {"busy_pct": 75.0, "steal_pct": 5.0}
    assert busy_share((5, 0, 10), (5, 0, 10)) == {"busy_pct": 0.0, "steal_pct": 0.0}


def test_every_run_of_the_system_is_checked_and_what_refused_requests_were_told_is_printed() -> None:
    flat, hot = _run(10.0, "flat"), _run(20.0, "hot")
    good, refused = _run(30.0, "good"), _run(40.0, "refused") | {"refused": ['503 {"detail":"send it again"}']}
    rate = median_run([good, refused]) | {"rate": 200.0}
    result: dict[str, Any] = {"db": "postgres", "system": flat, "system_rates": [rate], "system_one_offering": hot}
    labels = [label for label, _run_ in system_runs(result)]
    assert labels == ["flat out", "200/s run 1", "200/s run 2", "one offering"]
    assert [run["confirmed_p99_ms"] for _label, run in system_runs(result)] == [10.0, 30.0, 40.0, 20.0]
    assert system_runs({"db": "sqlite", "latency": {}}) == []
    for run in (flat, hot, good):
        run.update(e2e_per_s=1, lag_p50_ms=1, lag_p95_ms=1, lag_p99_ms=1, http_p99_ms=1, cpu_per_enrolment_ms=1)
    floors = {"floor": {}, "floor_200": {}, "ratio_to_floor": 0.5}
    printed = table([result | floors | {"system_rates": [rate | good]}])
    assert 'postgres 200/s run 2: refused: 503 {"detail":"send it again"}' in printed.splitlines()
    assert "run 1: refused" not in printed


def test_the_driver_does_not_collect_garbage_while_it_times_requests_and_collects_again_after() -> None:
    assert gc.isenabled()
    try:
        with collector_paused():
            assert not gc.isenabled()
        assert gc.isenabled()
        with pytest.raises(RuntimeError), collector_paused():
            raise RuntimeError("a pass that fails")
        assert gc.isenabled()
        gc.disable()  # off already (as under a profiler): left off
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_the_toggle_alternates_in_pairs_so_a_drift_favours_neither_state() -> None:
    assert order(2) == ["killed", "alive"]
    assert order(8) == ["killed", "alive", "alive", "killed", "killed", "alive", "alive", "killed"]
    assert order(12).count("killed") == order(12).count("alive") == 6


def test_the_cpu_of_every_process_is_charged_to_its_part_of_the_pipeline() -> None:
    """Our processes by name with their children (nginx's workers under its master), RabbitMQ's and
    PostgreSQL's processes, the driver itself; new processes count from their start, others not at all."""
    me = os.getpid()
    before = {
        100: (1, "nginx", 0.1),
        101: (100, "nginx", 5.0),
        200: (1, "python", 10.0),
        300: (1, "beam.smp", 50.0),
        301: (300, "erl_child_setup", 1.0),
        400: (1, "postgres", 2.0),
        401: (400, "postgres", 3.0),
        500: (1, "cron", 7.0),
        600: (1, "python", 9.0),  # ended in between; its pid now belongs to a new backend
        me: (1, "python", 1.0),
    }
    spent = {101: 0.5, 200: 2.0, 300: 1.25, 401: 0.5, 500: 1.0, me: 0.5}
    after = {pid: (ppid, name, cpu + spent.get(pid, 0.0)) for pid, (ppid, name, cpu) in before.items() if pid != 600}
    after |= {
        302: (301, "inet_gethost", 0.25),  # new, under RabbitMQ
        402: (400, "postgres", 0.75),  # a new backend
        600: (400, "postgres", 0.5),
    }
    parts = cpu_by_part(before, after, {"gateway": 100, "enrolment-all": 200, "billing-all": 700})
    assert parts == {
        "gateway": 0.5,
        "enrolment-all": 2.0,
        "billing-all": 0.0,  # not running
        "rabbitmq": 1.5,
        "postgresql": 1.75,
        "driver": 0.5,
    }


def test_where_the_cpu_goes_adds_a_services_processes_and_leaves_the_rest_to_other() -> None:
    run = {
        "completed": 1000,
        "cpu_s": {"enrolment-api": 1.5, "enrolment-worker": 1.0, "gateway": 0.1, "issuer": 0.0},
        "cpu_shared_s": {"rabbitmq": 1.2, "postgresql": 0.0, "driver": 0.2},
        "machine_cpu_per_enrolment_ms": 5.5,
    }
    assert where_cpu_goes(run) == "5.50 = enrolment 2.50, rabbitmq 1.20, driver 0.20, gateway 0.10, other 1.50"


def test_the_floors_cpu_per_completion_leaves_out_what_its_start_and_stop_cost() -> None:
    run = {"completed": 3010, "cpu_s": {"floor": 14.0, "rabbitmq": 3.5, "postgresql": 0.0}}
    startup = {"completed": 10, "cpu_s": {"floor": 2.0, "rabbitmq": 0.5, "postgresql": 0.0}}
    assert floor_cpu_per_completion(run, startup) == {"floor": 4.0, "rabbitmq": 1.0, "postgresql": 0.0, "all": 5.0}
    assert floor_cpu_per_completion(startup, startup) is None  # nothing beyond the start-up to divide by
    assert floor_cpu_per_completion({"ok": False}, startup) is None  # a failed run has no figures


def _responses(raw: bytes) -> list[tuple[int, bytes, bool]]:
    async def read() -> list[tuple[int, bytes, bool]]:
        reader = asyncio.StreamReader()
        reader.feed_data(raw)
        reader.feed_eof()
        return [await read_response(reader) for _ in range(3)]

    return asyncio.run(read())


def test_the_drivers_read_responses_one_after_another_on_one_connection() -> None:
    raw = (
        b'HTTP/1.1 201 Created\r\nContent-Type: application/json\r\ncontent-length: 7\r\n\r\n{"a":1}'
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;x=y\r\nabcd\r\n3\r\nefg\r\n0\r\n\r\n"
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    assert _responses(raw) == [(201, b'{"a":1}', False), (200, b"abcdefg", False), (503, b"", True)]


def test_the_cold_report_passes_count_as_one_with_every_request_and_the_mean_cpu() -> None:
    def run(latencies: list[float], wall_s: float, cpu: float, by_process: dict[str, float]) -> Pass:
        asks = [Ask("billing", f"/api/reports/billing?n={i}") for i in range(len(latencies))]
        return Pass(asks, [Answer(ms, 200, b"") for ms in latencies], wall_s, {"all": cpu}, by_process)

    first = run([1.0, 2.0, 90.0], 0.5, 3.0, {"reporting-all": 2.0, "gateway": 1.0})
    second = run([1.0, 3.0, 5.0], 0.25, 2.0, {"reporting-all": 2.0})
    both = merged([first, second])
    assert [answer.latency_ms for answer in both.answers] == [1.0, 2.0, 90.0, 1.0, 3.0, 5.0]
    assert [ask.path for ask in both.asks] == [ask.path for ask in first.asks + second.asks]
    assert both.wall_s == 0.75 and both.cpu_ms == {"all": 2.5}
    assert both.cpu_by_process == {"reporting-all": 2.0, "gateway": 0.5}  # not seen in a pass: none spent there


def _measured(
    *, e2e: float = 200.0, ratio: float = 0.7, p99_100: float = 60.0, search: float = 20.0, reports=(30.0, 40.0)
) -> dict[str, Any]:
    """One database's results as `bench_db` writes them, with only the figures the targets read."""
    done = {"n": 3000, "accepted": 3000, "completed": 3000}
    sizes = [
        {"enrolments": rows, "p99_ms": p99, "errors": 0} for rows, p99 in zip((10_000, 1_000_000), reports, strict=True)
    ]
    flat = round(reports[1] / reports[0], 2)
    return {
        "db": "postgres",
        "floor": {"e2e_per_s": 300},
        "floor_after": {"e2e_per_s": 280},
        "system": {**done, "e2e_per_s": e2e},
        "ratio_to_floor": ratio,
        "system_rates": [
            {**done, "rate": 100.0, "confirmed_p99_ms": p99_100, "repeats": [{"confirmed_p99_ms": p99_100}]},
            {**done, "rate": 200.0, "confirmed_p99_ms": 900.0},
        ],
        "latency": {
            "search": {"concurrency": 4, "published": 9500, "p99_ms": search, "errors": 0},
            "reports": {"sizes": sizes, "flat": flat <= 1.5, "p99_ratio_largest_to_smallest": {"overall": flat}},
        },
    }


def test_the_targets_line_up_every_figure_of_a_run_with_its_goal_and_the_aim_is_not_counted() -> None:
    met = verdicts([_measured()])
    assert [v.met for v in met if "aim" not in v.target] == [True] * 7
    assert [v.met for v in met if "aim" in v.target] == [False]  # 0.7 of the floor: the 0.5 met, the 1.0 not
    assert targets_table(met).splitlines()[-1] == "targets met: 7 of 7"
    assert not any("200/s" in v.target for v in met)  # only 100/s has a target

    missed = verdicts([_measured(e2e=169.9, ratio=0.49, p99_100=100.0, search=30.0, reports=(49.0, 80.0))])
    assert {v.target.split(",")[0]: v.met for v in missed if not v.target.startswith("reports p99")} == {
        "sustained end to end": False,
        "system / floor": False,
        "system / floor (the aim)": False,
        "request → confirmed p99 at 100/s": False,
        "search p99": False,
        "reports flat: p99 largest / smallest": False,
    }
    assert [v.met for v in missed if v.target.startswith("reports p99")] == [True, False]
    assert targets_table(missed).splitlines()[-1] == "targets met: 1 of 7"


def test_a_run_that_lost_requests_meets_no_throughput_or_latency_target_however_fast() -> None:
    result = _measured(e2e=900.0, p99_100=5.0)
    result["system"]["completed"] = 2999
    result["system_rates"][0]["accepted"] = 1499
    by_target = {v.target: v.met for v in verdicts([result])}
    assert by_target["sustained end to end, flat out"] is False
    assert by_target["request → confirmed p99 at 100/s, median run"] is False


def test_a_part_left_out_of_the_run_has_no_verdict() -> None:
    only_latency = {key: value for key, value in _measured().items() if key not in ("system", "system_rates")}
    assert [v.target.split(",")[0] for v in verdicts([only_latency])] == [
        "search p99",
        "reports p99",
        "reports p99",
        "reports flat: p99 largest / smallest",
    ]
    assert verdicts([{"db": "sqlite"}]) == []
