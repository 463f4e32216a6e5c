"""Does one process cost the write path anything? Flat-out runs in ONE system, that process killed or alive.

    .venv/bin/python -m bench.toggle [SERVICE ROLE] [--runs 12] [--n 3000] [--db sqlite]
    .venv/bin/python -m bench.toggle reporting reader1          # the read-only reporting API (decision 004)

Starts a private system as `make run` does (bench/system.py), then runs `--n` enrolments flat out
`--runs` times, killing the process before some runs and starting it again before others, in the order
killed, alive, alive, killed, killed, alive, … (so a drift of the machine's speed within the session
favours neither). Prints each run (enrolments/s, CPU per enrolment by process) and the mean of each state.

Why not two `bench.run`s, one with and one without: separate systems on this shared 2-core machine swing
by ±20 % from one start to the next, and every service's CPU per enrolment moves alike, which hid the
answer for a whole round (docs/performance.md, fifteenth round). Within one system the swing is smaller
and both states see the same files, ports and process layout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.run import measure_system
from bench.system import BenchSystem

SPREAD = 20


def order(runs: int) -> list[str]:
    """killed, alive, alive, killed, killed, alive, … — `runs` long."""
    return [("killed", "alive")[(i + 1) // 2 % 2] for i in range(runs)]


async def toggle(db: str, service: str, role: str, runs: int, n: int, concurrency: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="tarjotin-bench-") as tmp:
        system = BenchSystem(Path(tmp), db)
        system.up()
        try:
            if role not in {name.removeprefix(f"{service}-") for name in system.pids() if name.startswith(service)}:
                raise SystemExit(f"{service} {role} is not one of this system's processes: {sorted(system.pids())}")
            home, offerings = await system.seed(SPREAD, seats=max(10000, runs * n // SPREAD + 100))
            await asyncio.sleep(1.0)  # let the offerings reach enrolment
            await measure_system(system, home, offerings, min(50, n), 8, 0, "warm")
            state, results = "alive", []
            for i, wanted in enumerate(order(runs)):
                if wanted == "killed" and state == "alive":
                    system.script("kill", service, role)
                elif wanted == "alive" and state == "killed" and role == "worker":
                    system.script("start", service, role)
                    await asyncio.sleep(2.0)  # a worker has no /ready: time to connect and consume
                elif wanted == "alive" and state == "killed":
                    system.script("start", service, role, "--wait")  # returns when it answers /ready
                state = wanted
                run = await measure_system(system, home, offerings, n, concurrency, 0, f"toggle{i}")
                row = {
                    "run": i + 1,
                    "process": state,
                    "e2e_per_s": run["e2e_per_s"],
                    "cpu_per_enrolment_ms": run["cpu_per_enrolment_ms"],
                    "cpu_s": {name: cpu for name, cpu in run["cpu_s"].items() if cpu > 0},
                    "completed": run["completed"],
                    "accepted": run["accepted"],
                }
                print(json.dumps(row), flush=True)
                results.append(row)
        finally:
            await system.down()
    means = {
        s: round(statistics.mean(r["e2e_per_s"] for r in results if r["process"] == s), 1)
        for s in ("killed", "alive")
        if any(r["process"] == s for r in results)
    }
    return {"db": db, "process": f"{service} {role}", "n": n, "runs": results, "mean_e2e_per_s": means}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.toggle", description=__doc__.split("\n\n")[0])
    parser.add_argument("service", nargs="?", default="reporting")
    parser.add_argument("role", nargs="?", default="reader1")
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--runs", type=int, default=12)
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args(argv)
    if args.runs < 2:
        parser.error("--runs must be at least 2 (one in each state)")
    result = asyncio.run(toggle(args.db, args.service, args.role, args.runs, args.n, args.concurrency))
    print(f"mean enrolments/s: {result['mean_e2e_per_s']}", file=sys.stderr)
    print(json.dumps(result["mean_e2e_per_s"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
