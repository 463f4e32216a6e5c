"""The benchmark's own arithmetic: which of repeated fixed-rate runs it reports, and the machine's busy share."""

from __future__ import annotations

from typing import Any

from bench.run import REPEAT_FIGURES, median_run
from bench.system import busy_share


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
