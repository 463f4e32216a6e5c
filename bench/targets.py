"""The performance targets (issue 5) read off one `make bench` run: one line per target and database, met or not.

The figures are the run's own (the tables above it say how each was measured); this only sets them beside
the targets so that a re-run says at a glance where it stands. Machine speed moves every figure but the
ratio to the floor (measured in the same run), so a missed absolute target on a slower machine is reported
as missed, with the floor's own figures printed for scale.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from bench.latency import FLAT_RATIO, REPORT_TARGET_P99_MS, SEARCH_TARGET_P99_MS, report_size_met, search_met

SUSTAINED_PER_S = 170.0  # "an opening rush of 100,000 students in ten minutes"
RATIO_TARGET, RATIO_AIM = 0.5, 1.0
CONFIRMED_RATE_PER_S, CONFIRMED_P99_MS = 100.0, 100.0


@dataclass(frozen=True)
class Verdict:
    db: str
    target: str
    goal: str
    figure: str
    met: bool


def complete(run: dict[str, Any]) -> bool:
    """Every request of the run was accepted and went all the way through."""
    return bool(run["completed"] == run["accepted"] == run["n"])


def verdicts(results: list[dict[str, Any]]) -> list[Verdict]:
    """Each target that the run measured, per database; a part left out (`--only`, no 100/s rate) gives none."""
    out: list[Verdict] = []
    for r in results:
        db = r["db"]
        system = r.get("system")
        if system:
            out.append(
                Verdict(
                    db,
                    "sustained end to end, flat out",
                    f"≥ {SUSTAINED_PER_S:g}/s",
                    f"{system['e2e_per_s']}/s",
                    system["e2e_per_s"] >= SUSTAINED_PER_S and complete(system),
                )
            )
            ratio = r.get("ratio_to_floor")
            floors = "/".join(str(f.get("e2e_per_s", "?")) for f in (r.get("floor", {}), r.get("floor_after", {})))
            for goal in (RATIO_TARGET, RATIO_AIM):
                out.append(
                    Verdict(
                        db,
                        "system / floor" if goal == RATIO_TARGET else "system / floor (the aim)",
                        f"≥ {goal:.1f}",
                        f"{ratio} (floor {floors}/s)",
                        ratio is not None and ratio >= goal,
                    )
                )
        for run in r.get("system_rates", []):
            if run["rate"] != CONFIRMED_RATE_PER_S:
                continue
            runs = ", ".join(str(x["confirmed_p99_ms"]) for x in run.get("repeats") or [run])
            out.append(
                Verdict(
                    db,
                    f"request → confirmed p99 at {CONFIRMED_RATE_PER_S:g}/s, median run",
                    f"< {CONFIRMED_P99_MS:g} ms",
                    f"{run['confirmed_p99_ms']} ms (runs {runs})",
                    run["confirmed_p99_ms"] < CONFIRMED_P99_MS and complete(run),
                )
            )
        latency = r.get("latency")
        if latency:
            search, reports = latency["search"], latency["reports"]
            c = search["concurrency"]
            out.append(
                Verdict(
                    db,
                    f"search p99, c={c}, {search['published']:,} published offerings",
                    f"< {SEARCH_TARGET_P99_MS:g} ms",
                    f"{search['p99_ms']} ms",
                    search_met(search),
                )
            )
            for size in reports["sizes"]:
                out.append(
                    Verdict(
                        db,
                        f"reports p99, c={c}, {size['enrolments']:,} enrolments",
                        f"< {REPORT_TARGET_P99_MS:g} ms",
                        f"{size['p99_ms']} ms",
                        report_size_met(size),
                    )
                )
            if reports["flat"] is not None:
                ratios = reports["p99_ratio_largest_to_smallest"]
                known = [v for v in ratios.values() if v is not None]
                out.append(
                    Verdict(
                        db,
                        "reports flat: p99 largest / smallest, each endpoint",
                        f"≤ {FLAT_RATIO:g}",
                        f"overall {ratios.get('overall')}, largest {max(known, default=None)}",
                        bool(reports["flat"]),
                    )
                )
    return out


def targets_table(found: list[Verdict]) -> str:
    """The verdicts as a table; the last line counts the targets met (the aim is not a target)."""
    lines = [f"{'db':9} {'target':52} {'goal':>9}  {'met':4} figure"]
    lines += [f"{v.db:9} {v.target:52} {v.goal:>9}  {'yes' if v.met else 'NO':4} {v.figure}" for v in found]
    targets = [v for v in found if "(the aim)" not in v.target]
    lines.append(f"targets met: {sum(v.met for v in targets)} of {len(targets)}")
    return "\n".join(lines)


def as_json(found: list[Verdict]) -> list[dict[str, Any]]:
    return [asdict(v) for v in found]
