"""`make bench`: the bare floor and the real system under the same load, on SQLite and PostgreSQL.

    python -m bench.run [--db sqlite,postgres] [--n 3000] [--concurrency 32] [--rates 100,200]
                        [--rate-seconds 15] [--rate-repeats 3] [--spread 20] [--floor PATH]
                        [--out bench-results] [--smoke]
                        [--only enrolment|latency] [--offerings 10000] [--searches 400]
                        [--report-rows 10000,1000000] [--report-requests 300] [--read-concurrency 4]

For each database kind: ../shared/bench-floor/run.sh (flat out, then at 200/s) with this venv's Python;
then a private Tarjotin (as `make run` starts it) driven through its gateway with POST /api/enrolments,
flat out and at fixed rates (each rate --rate-repeats times: the table shows the run with the median
→ confirmed p99, and every run's), the requests going to --spread offerings in turn; then flat out again with
every request for one offering (the worst case: each transaction waits for that offering's seat row).
An enrolment is complete when the reporting service has recorded its `enrolment.confirmed` (request
accepted → commitment accepted → enrolment confirmed → report updated);
times come from the services' own databases (reporting inbox, enrolment rows). Then, in the same system,
the read paths (`bench/latency.py`): catalogue search over --offerings imported offerings, and every
report endpoint over read models holding each of --report-rows enrolments. With the system stopped,
the floor runs flat out once more: the ratio to the floor is to the mean of the two floor runs (a shared
machine's speed drifts within minutes; both are in the table). Prints tables, the machine's CPU and a
Python yardstick, the issue's targets beside this run's figures (`bench/targets.py`), and writes the whole
result as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from bench import latency
from bench.drive import drive, pct
from bench.hops import hop_lags, hops_table
from bench.system import (
    CLOCK_TICKS,
    ROOT,
    BenchSystem,
    busy_share,
    cpu_by_part,
    machine_jiffies,
    processes,
    rss_mb,
)
from bench.targets import as_json, complete, targets_table, verdicts
from tests.support.system import free_port

CONFIRMED = "fi.tarjotin.enrolment.confirmed.v1"
REFUSED_EXAMPLES = 5


FLOOR_STARTUP_N = 10
"""Requests of the floor run that measures the CPU of its start and stop."""


def run_floor(floor: Path, db: str, n: int, concurrency: int, rate: float) -> dict[str, Any]:
    env = {**os.environ, "PYTHON": sys.executable}
    args = [
        "bash",
        str(floor / "run.sh"),
        "--db",
        db,
        "--n",
        str(n),
        "--concurrency",
        str(concurrency),
        "--rate",
        str(rate),
        "--port",
        str(free_port()),
    ]
    shared_before, children_before = processes(), os.times()
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=900)
    shared, children = cpu_by_part(shared_before, processes(), {}), os.times()
    line = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else '{"ok": false, "error": "no output"}'
    result: dict[str, Any] = json.loads(line)
    if not result.get("ok"):
        print(f"floor run failed: {result.get('error')}\n{done.stderr[-2000:]}", file=sys.stderr)
    # run.sh waits for every process it starts, so their CPU ends up in this process's children's times.
    spent = sum(children[2:4]) - sum(children_before[2:4])  # children_user, children_system
    result["cpu_s"] = {"floor": round(spent, 2), "rabbitmq": shared["rabbitmq"], "postgresql": shared["postgresql"]}
    return result


def floor_cpu_per_completion(run: dict[str, Any], startup: dict[str, Any]) -> dict[str, float] | None:
    """The machine's CPU ms per completion of a floor run beyond what its start and stop cost (a run of a
    few requests): its processes (API with relay, consumer, driver), RabbitMQ, PostgreSQL, and in all."""
    extra = (run.get("completed") or 0) - (startup.get("completed") or 0)
    if extra <= 0 or "cpu_s" not in run or "cpu_s" not in startup:
        return None
    per = {part: round(1000 * (run["cpu_s"][part] - startup["cpu_s"][part]) / extra, 2) for part in run["cpu_s"]}
    return {**per, "all": round(sum(per.values()), 2)}


async def measure_system(
    system: BenchSystem, home: str, offerings: list[str], n: int, concurrency: int, rate: float, tag: str
) -> dict[str, Any]:
    bodies = [
        orjson.dumps(
            {
                "offering_id": offerings[i % len(offerings)],
                "home_institution_id": home,
                "student": {"learner_id": f"{tag}-{i}", "name": f"Bench {i}", "email": f"b{i}@example.fi"},
            }
        )
        for i in range(n)
    ]
    # Enrolments come from the home institution's counsellor, as on an opening day.
    auth = system.bearer("counsellor", home)
    pids = system.pids()
    processes_before = processes()
    machine_before = machine_jiffies()
    started = time.time()
    result = await drive(
        system.gateway_port,
        "/api/enrolments",
        bodies,
        concurrency=concurrency,
        rate=rate,
        headers=lambda i: {**auth, "Idempotency-Key": f"{tag}-{i}"},
    )
    ok = [i for i, status in enumerate(result.status) if status == 201]
    # What the few refused requests were told (status, problem detail, request id): enough to tell a
    # gateway's "not answering" from a service's "database briefly unreachable" after the run is gone.
    refused_at = [i for i, status in enumerate(result.status) if status != 201][:REFUSED_EXAMPLES]
    refused = [f"{result.status[i]} {result.body[i][:400].decode(errors='replace')}" for i in refused_at]
    sent_by_id = {orjson.loads(result.body[i])["id"]: result.sent_at[i] for i in ok}
    done_at = await wait_for_reports(system, set(sent_by_id), within_s=max(120.0, n / 20))
    machine_after = machine_jiffies()
    machine_share = busy_share(machine_before, machine_after)  # the sending and the catching up
    parts = cpu_by_part(processes_before, processes(), pids)
    confirmed_at = await confirmed_times(system, set(sent_by_id))
    elapsed = time.time() - started
    hops = await hop_lags(system, started, time.time())
    cpu = {name: parts[name] for name in pids}
    completed = max(1, len(done_at))
    lags = [(done_at[e] - sent_by_id[e]) * 1000 for e in done_at]
    to_confirmed = [(confirmed_at[e] - sent_by_id[e]) * 1000 for e in confirmed_at]
    first, last = min(sent_by_id.values(), default=0.0), max(done_at.values(), default=0.0)
    return {
        "rate": rate,
        "n": n,
        "accepted": len(ok),
        "completed": len(done_at),
        "status": {str(s): result.status.count(s) for s in sorted(set(result.status))},
        "refused": refused,
        "e2e_per_s": round(len(done_at) / (last - first), 1) if last > first else 0.0,
        "http_rps": round(n / result.wall_s, 1),
        "http_p50_ms": pct(result.latency_ms, 50),
        "http_p99_ms": pct(result.latency_ms, 99),
        "lag_p50_ms": pct(lags, 50),
        "lag_p95_ms": pct(lags, 95),
        "lag_p99_ms": pct(lags, 99),
        "confirmed_p50_ms": pct(to_confirmed, 50),
        "confirmed_p99_ms": pct(to_confirmed, 99),
        "cpu_s": cpu,
        "cpu_per_enrolment_ms": round(sum(cpu.values()) / completed * 1000, 2),
        "cpu_shared_s": {name: parts[name] for name in ("rabbitmq", "postgresql", "driver")},
        "machine_cpu_per_enrolment_ms": round(
            (machine_after[0] - machine_before[0]) / CLOCK_TICKS / completed * 1000, 2
        ),
        "rss_mb": {name: rss_mb(pid) for name, pid in pids.items()},
        **machine_share,
        "wall_s": round(elapsed, 1),
        "hops": hops,
    }


REPEAT_FIGURES = (
    *("n", "accepted", "completed", "e2e_per_s", "lag_p50_ms", "lag_p99_ms"),
    *("confirmed_p50_ms", "confirmed_p99_ms", "cpu_per_enrolment_ms", "busy_pct", "steal_pct", "refused"),
)


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Of repeated runs at one fixed rate, the one with the median request → confirmed p99, with every run's
    main figures under `repeats` (in the order run). Near a machine's capacity the tail swings several-fold
    between 15-second runs of the same code (docs/performance.md, seventh round), so one run says little."""
    ranked = sorted(runs, key=lambda run: run["confirmed_p99_ms"])
    middle = ranked[(len(ranked) - 1) // 2]
    return {**middle, "repeats": [{key: run.get(key) for key in REPEAT_FIGURES} for run in runs]}


async def wait_for_reports(system: BenchSystem, ids: set[str], within_s: float) -> dict[str, float]:
    """When reporting recorded each enrolment's confirmation (its inbox time)."""
    deadline = time.time() + within_s
    found: dict[str, float] = {}
    while True:
        rows = await system.query(
            "reporting",
            "SELECT s.subject, i.processed_at FROM event_store s JOIN inbox i ON i.event_id = s.event_id "
            f"WHERE s.type = '{CONFIRMED}'",
        )
        found = {subject: at for subject, at in rows if subject in ids}
        if len(found) >= len(ids) or time.time() > deadline:
            return found
        await asyncio.sleep(0.5)


async def confirmed_times(system: BenchSystem, ids: set[str]) -> dict[str, float]:
    rows = await system.query("enrolment", "SELECT id, updated_at FROM enrolments WHERE status = 'confirmed'")
    times = {}
    for enrolment_id, updated in rows:
        if enrolment_id in ids:
            moment = updated if isinstance(updated, datetime) else datetime.fromisoformat(str(updated))
            times[enrolment_id] = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    return times


async def bench_db(db: str, args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {"db": db}
    enrolment = args.only in (None, "enrolment")
    if enrolment:
        floor_dir = Path(args.floor)
        print(f"[{db}] floor, flat out (n={args.n}, c={args.concurrency})", file=sys.stderr)
        report["floor"] = run_floor(floor_dir, db, args.n, args.concurrency, 0)
        print(f"[{db}] floor, {FLOOR_STARTUP_N} requests (what its start and stop cost)", file=sys.stderr)
        report["floor_startup"] = run_floor(floor_dir, db, FLOOR_STARTUP_N, args.concurrency, 0)
        report["floor"]["cpu_per_completion_ms"] = floor_cpu_per_completion(report["floor"], report["floor_startup"])
        floor_rate_n = max(50, int(200 * args.rate_seconds))
        print(f"[{db}] floor, 200/s (n={floor_rate_n})", file=sys.stderr)
        report["floor_200"] = run_floor(floor_dir, db, floor_rate_n, args.concurrency, 200)

    with tempfile.TemporaryDirectory(prefix="tarjotin-bench-") as tmp:
        system = BenchSystem(Path(tmp), db)
        print(f"[{db}] starting the system", file=sys.stderr)
        system.up()
        try:
            if enrolment:
                await measure_enrolment(system, args, report)
            if args.only in (None, "latency"):
                report["latency"] = await latency.bench_latency(
                    system,
                    offerings=args.offerings,
                    searches=args.searches,
                    report_sizes=args.report_rows,
                    report_offerings=args.report_offerings,
                    report_institutions=args.report_institutions,
                    report_requests=args.report_requests,
                    concurrency=args.read_concurrency,
                    log=lambda text: print(f"[{db}] {text}", file=sys.stderr),
                )
        finally:
            await system.down()
    if enrolment:
        # The floor once more, the system stopped: a shared machine's speed drifts within minutes, so the
        # ratio is to the mean of the floor before and after, and the table shows both.
        print(f"[{db}] floor again, flat out", file=sys.stderr)
        report["floor_after"] = run_floor(floor_dir, db, args.n, args.concurrency, 0)
        floors = [r.get("e2e_per_s") or 0 for r in (report["floor"], report["floor_after"])]
        floor_rate = sum(floors) / 2 if all(floors) else max(floors)
        report["ratio_to_floor"] = round(report["system"]["e2e_per_s"] / floor_rate, 2) if floor_rate else None
    return report


async def measure_enrolment(system: BenchSystem, args: argparse.Namespace, report: dict[str, Any]) -> None:
    db = system.db
    total = args.n + sum(int(r * args.rate_seconds) for r in args.rates) + 50
    spread = max(args.spread, -(-total // 9000))
    home, offerings = await system.seed(spread + 1, seats=10000)
    offerings, hot = offerings[:spread], offerings[spread:]
    await asyncio.sleep(1.0)  # let the offerings reach enrolment
    await measure_system(system, home, offerings, min(50, args.n), 8, 0, "warm")
    print(f"[{db}] system, flat out over {spread} offerings", file=sys.stderr)
    report["system"] = await measure_system(system, home, offerings, args.n, args.concurrency, 0, "flat")
    report["system_rates"] = []
    for rate in args.rates:
        runs = []
        for repeat in range(args.rate_repeats):
            print(f"[{db}] system, {rate}/s ({repeat + 1} of {args.rate_repeats})", file=sys.stderr)
            runs.append(
                await measure_system(
                    system,
                    home,
                    offerings,
                    int(rate * args.rate_seconds),
                    args.concurrency,
                    rate,
                    f"r{int(rate)}-{repeat}",
                )
            )
        report["system_rates"].append(median_run(runs))
    # The worst case: every request for the same offering, so every transaction queues for its seat row.
    print(f"[{db}] system, flat out, one offering", file=sys.stderr)
    report["system_one_offering"] = await measure_system(system, home, hot, args.n, args.concurrency, 0, "hot")


def machine() -> dict[str, Any]:
    """What ran the bench, so that figures from different machines (or days) can be told apart: the CPU
    and a pure-Python yardstick (best of three `sum(range(10**7))`; ~0.1 s on a fast core)."""
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor() or "unknown",
    )
    times = []
    for _ in range(3):
        started = time.perf_counter()
        sum(range(10**7))
        times.append(time.perf_counter() - started)
    return {"cpu": model, "cores": os.cpu_count(), "python_yardstick_s": round(min(times), 3)}


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        f"{'db':9} {'run':14} {'e2e/s':>8} {'ratio':>6} {'lag p50':>8} {'p95':>8} {'p99':>8} "
        f"{'→confirmed p99':>15} {'http p99':>9} {'cpu ms/enr':>10} {'busy %':>7}"
    ]
    for r in results:
        if "system" not in r:
            continue
        floor, system = r["floor"], r["system"]
        floors = (("floor flat", floor), ("floor after", r.get("floor_after", {})), ("floor 200/s", r["floor_200"]))
        for label, run in floors:
            lines.append(
                f"{r['db']:9} {label:14} {run.get('e2e_per_s', 0):>8} {'':>6} "
                f"{run.get('lag_p50_ms', 0):>8} {run.get('lag_p95_ms', 0):>8} {run.get('lag_p99_ms', 0):>8}"
            )
        runs = [("system flat", system)] + [(f"system {int(x['rate'])}/s", x) for x in r["system_rates"]]
        if "system_one_offering" in r:
            runs.append(("1 offering flat", r["system_one_offering"]))
        for label, run in runs:
            ratio = r["ratio_to_floor"] if run is system else ""
            lines.append(
                f"{r['db']:9} {label:14} {run['e2e_per_s']:>8} {ratio!s:>6} {run['lag_p50_ms']:>8} "
                f"{run['lag_p95_ms']:>8} {run['lag_p99_ms']:>8} {run['confirmed_p99_ms']:>15} "
                f"{run['http_p99_ms']:>9} {run['cpu_per_enrolment_ms']:>10} {run.get('busy_pct', '')!s:>7}"
            )
    for r in results:
        for run in r.get("system_rates", []):
            repeats = run.get("repeats", [])
            if len(repeats) > 1:
                each = ", ".join(
                    f"{x['confirmed_p99_ms']} ({x['e2e_per_s']}/s, {x['busy_pct']} % busy, {x['steal_pct']} % stolen)"
                    for x in repeats
                )
                lines.append(f"{r['db']} {int(run['rate'])}/s, → confirmed p99 of each run (ms): {each}")
    for r in results:
        if "machine_cpu_per_enrolment_ms" in r.get("system", {}):
            lines.append(f"{r['db']} flat out, the machine's CPU ms per enrolment: {where_cpu_goes(r['system'])}")
        floor_cpu = r.get("floor", {}).get("cpu_per_completion_ms")
        if floor_cpu:
            parts = ", ".join(f"{part} {ms:.2f}" for part, ms in floor_cpu.items() if part != "all")
            lines.append(
                f"{r['db']} floor flat out, CPU ms per completion beyond start-up: {floor_cpu['all']:.2f} = {parts}"
            )
    for r in results:
        for label, run in system_runs(r):
            lines += [f"{r['db']} {label}: refused: {answer}" for answer in run.get("refused") or []]
    return "\n".join(lines)


def where_cpu_goes(run: dict[str, Any]) -> str:
    """The machine's CPU per enrolment of one run, by part: each service (its processes together), the
    gateway, RabbitMQ, PostgreSQL, the load driver, and the rest of the machine."""
    per: dict[str, float] = defaultdict(float)
    for name, seconds in {**run["cpu_s"], **run["cpu_shared_s"]}.items():
        per[name.split("-")[0]] += seconds
    n = max(1, run["completed"])
    ms = {name: 1000 * seconds / n for name, seconds in per.items()}
    total = run["machine_cpu_per_enrolment_ms"]
    shown = ", ".join(
        f"{name} {value:.2f}" for name, value in sorted(ms.items(), key=lambda kv: -kv[1]) if value >= 0.005
    )
    return f"{total:.2f} = {shown}, other {total - sum(ms.values()):.2f}"


def system_runs(r: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every run of the system on one database kind, labelled, repeats of the fixed rates included."""
    runs = [("flat out", r["system"])] if "system" in r else []
    for rate in r.get("system_rates", []):
        runs += [(f"{int(rate['rate'])}/s run {i + 1}", x) for i, x in enumerate(rate.get("repeats") or [rate])]
    if "system_one_offering" in r:
        runs.append(("one offering", r["system_one_offering"]))
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="sqlite,postgres")
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rates", default="100,200")
    parser.add_argument("--rate-seconds", type=float, default=15.0)
    parser.add_argument(
        "--rate-repeats",
        type=int,
        default=3,
        help="runs at each fixed rate; the table shows the run with the median → confirmed p99, and all of them",
    )
    parser.add_argument(
        "--spread",
        type=int,
        default=20,
        help="offerings the enrolments go to in turn (an opening rush over many courses); one more run puts "
        "them all on one offering, the worst case",
    )
    parser.add_argument("--floor", default=str(ROOT.parent / "shared" / "bench-floor"))
    parser.add_argument("--out", default=str(ROOT / "bench-results"))
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to prove the harness works")
    parser.add_argument("--only", choices=("enrolment", "latency"), help="run one part (default: both)")
    read = parser.add_argument_group("read paths (bench/latency.py)")
    read.add_argument("--offerings", type=int, default=10000, help="offerings imported for the search")
    read.add_argument("--searches", type=int, default=400, help="search requests measured")
    read.add_argument(
        "--report-rows",
        default="10000,1000000",
        help="enrolments in the reporting read models, smallest first; the reports are measured at each",
    )
    read.add_argument("--report-requests", type=int, default=300, help="report requests measured per size")
    read.add_argument("--report-offerings", type=int, default=10000, help="offerings the enrolments are spread over")
    read.add_argument("--report-institutions", type=int, default=60)
    read.add_argument("--read-concurrency", type=int, default=4, help="connections for searches and reports")
    args = parser.parse_args(argv)
    args.rates = [float(r) for r in args.rates.split(",") if r]
    if args.rate_repeats < 1:
        parser.error("--rate-repeats must be at least 1")
    args.report_rows = [int(r) for r in args.report_rows.split(",") if r]
    if args.smoke:
        args.n, args.rate_seconds, args.rates, args.spread, args.rate_repeats = 60, 0.5, [100.0], 3, 2
        args.offerings, args.searches, args.report_rows = 50, 40, [1000, 2000]
        args.report_requests, args.report_offerings, args.report_institutions = 25, 40, 6
    if args.only != "latency" and not (Path(args.floor) / "run.sh").exists():
        print(
            f"bench-floor not found at {args.floor} (expected ../shared/bench-floor beside the checkout)",
            file=sys.stderr,
        )
        return 2
    host = machine()
    described = f"machine: {host['cpu']}, {host['cores']} cores, Python yardstick {host['python_yardstick_s']} s"
    print(described, file=sys.stderr)
    results = [asyncio.run(bench_db(db, args)) for db in args.db.split(",") if db]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"bench-{datetime.now().strftime('%Y%m%dT%H%M%S')}.json"
    found = verdicts(results)
    whole = {"args": dict(vars(args)), "machine": host, "results": results, "targets": as_json(found)}
    path.write_text(json.dumps(whole, indent=2))
    print(described)
    if any("system" in r for r in results):
        print(table(results))
        for r in results:
            for run in r.get("system_rates", []):
                print(f"\n{r['db']} at {int(run['rate'])}/s, per hop (ms; bench/hops.py):\n{hops_table(run['hops'])}")
    if any("latency" in r for r in results):
        print(latency.latency_table(results))
    if found:
        print(f"\nperformance targets, on this run ({described}):\n{targets_table(found)}")
    print(f"\nwritten: {path}")
    finished = all(complete(run) for r in results for _label, run in system_runs(r))
    answered = all(
        not r["latency"]["search"]["errors"] and not any(size["errors"] for size in r["latency"]["reports"]["sizes"])
        for r in results
        if "latency" in r
    )
    return 0 if finished and answered else 1


if __name__ == "__main__":
    raise SystemExit(main())
