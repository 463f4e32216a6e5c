"""Start a private Tarjotin on free ports (as `make run` does), seed it, read its databases, watch its processes."""

from __future__ import annotations

import contextlib
import os
import uuid
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from shared.bus import QueueNames
from tests.support.system import run_tarjotin, script_ports, system_env

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("catalogue", "enrolment", "billing", "reporting")
PG_URL = os.environ.get("TARJOTIN_PG_URL", "postgresql://postgres@127.0.0.1:5432")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class BenchSystem:
    def __init__(self, workdir: Path, db: str) -> None:
        tag = uuid.uuid4().hex[:8]
        self.db, self.workdir, self.pg_prefix = db, workdir, f"bench_{tag}"
        self.env = system_env(
            workdir,
            db,
            pg_url=PG_URL,
            pg_prefix=self.pg_prefix,
            exchange=f"bench.{tag}.events",
            queue_prefix=f"bench.{tag}",
            TARJOTIN_LOG_LEVEL="WARNING",
        )
        ports = script_ports(self.env)
        self.gateway_port = ports["gateway"]
        self.url = f"http://127.0.0.1:{self.gateway_port}"
        self.issuer_url = f"http://127.0.0.1:{ports['issuer']}"  # the development issuer

    def bearer(self, role: str = "network_admin", institution: str | None = None) -> dict[str, str]:
        """An Authorization header from the system's development token issuer."""
        params = {"role": role, "sub": f"bench-{role}", **({"institution": institution} if institution else {})}
        response = httpx.get(f"{self.issuer_url}/token", params=params, timeout=10)
        response.raise_for_status()
        return {"Authorization": f"Bearer {response.json()['access_token']}"}

    def script(self, *args: str) -> None:
        run_tarjotin(self.env, *args, timeout=600).check_returncode()

    def up(self) -> None:
        self.script("up")

    async def down(self) -> None:
        """Stop the processes, then drop the queues, exchange and databases this run made."""
        self.script("down")
        prefix = self.env["TARJOTIN_QUEUE_PREFIX"]
        connection = await aio_pika.connect(os.environ.get("TARJOTIN_AMQP_URL", "amqp://guest:guest@127.0.0.1/"))
        async with connection:
            for service in SERVICES:
                names = QueueNames(f"{prefix}.{service}")
                for queue in (names.main, names.dead, *(names.retry(d) for d in (1000, 10000, 60000))):
                    channel = await connection.channel()
                    with contextlib.suppress(Exception):
                        await channel.queue_delete(queue)
            channel = await connection.channel()
            with contextlib.suppress(Exception):
                await channel.exchange_delete(self.env["TARJOTIN_EXCHANGE"])
        if self.db == "postgres":
            admin = await asyncpg.connect(f"{PG_URL}/postgres")
            try:
                for service in SERVICES:
                    await admin.execute(f'DROP DATABASE IF EXISTS "{self.pg_prefix}_{service}" WITH (FORCE)')
            finally:
                await admin.close()

    def database_url(self, service: str) -> str:
        if self.db == "postgres":
            return f"{PG_URL.replace('postgresql:', 'postgresql+asyncpg:')}/{self.pg_prefix}_{service}"
        return f"sqlite+aiosqlite:///{self.workdir / 'data' / service}.db"

    def pids(self) -> dict[str, int]:
        found = {}
        for pidfile in (self.workdir / "run" / "pids").glob("*.pid"):
            found[pidfile.stem] = int(pidfile.read_text().strip())
        return found

    async def seed(self, offerings: int, seats: int) -> tuple[str, list[str]]:
        """A provider, a member home institution in automatic mode, and published offerings; returns ids."""
        today = date.today()
        async with httpx.AsyncClient(base_url=self.url, timeout=30, headers=self.bearer()) as client:
            for slug, member in (("bench-provider", True), ("bench-home", True)):
                response = await client.post(
                    "/api/catalogue/institutions",
                    json={
                        "id": slug,
                        "names": {"fi": slug},
                        "kind": "vocational",
                        "member": member,
                        "region": "Kainuu",
                    },
                )
                response.raise_for_status()
            ids = []
            for i in range(offerings):
                course = await client.post(
                    "/api/catalogue/courses",
                    json={
                        "provider_id": "bench-provider",
                        "code": f"B{i}",
                        "titles": {"fi": f"Kurssi {i}"},
                        "subject": "mathematics",
                        "level": "upper_secondary",
                        "credits": "2.0",
                        "languages": ["fi"],
                        "delivery_mode": "online_self_paced",
                    },
                )
                course.raise_for_status()
                offering = await client.post(
                    "/api/catalogue/offerings",
                    json={
                        "course_id": course.json()["id"],
                        "start_date": str(today + timedelta(days=30)),
                        "end_date": str(today + timedelta(days=90)),
                        "enrolment_opens": str(today - timedelta(days=1)),
                        "enrolment_closes": str(today + timedelta(days=20)),
                        "max_participants": seats,
                    },
                )
                offering.raise_for_status()
                (await client.post(f"/api/catalogue/offerings/{offering.json()['id']}/publish")).raise_for_status()
                ids.append(offering.json()["id"])
            return "bench-home", ids

    async def query(self, service: str, sql: str) -> list[Any]:
        engine = create_async_engine(self.database_url(service))
        try:
            async with engine.connect() as conn:
                return list((await conn.execute(sa.text(sql))).all())
        finally:
            await engine.dispose()


def _stat(pid: int | str) -> tuple[str, list[str]] | None:
    """A process's command name and its /proc stat fields after the name (state first); None once gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.index("(") + 1 : stat.rindex(")")], stat.rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    found = _stat(pid)
    return (int(found[1][11]) + int(found[1][12])) / CLOCK_TICKS if found else 0.0


SHARED = {"beam.smp": "rabbitmq", "erl_child_setup": "rabbitmq", "epmd": "rabbitmq", "postgres": "postgresql"}
"""Command names of the machine's shared servers, by the part of the pipeline they are."""


def processes() -> dict[int, tuple[int, str, float]]:
    """Every process now: pid → (parent pid, command name, CPU seconds so far, its own and that of the
    children it has waited for: PostgreSQL's short-lived backends end up in the postmaster's)."""
    table = {}
    for entry in Path("/proc").iterdir():
        found = _stat(entry.name) if entry.name.isdigit() else None
        if found:  # else not a process, or gone meanwhile
            name, rest = found
            table[int(entry.name)] = (int(rest[1]), name, sum(int(x) for x in rest[11:15]) / CLOCK_TICKS)
    return table


def cpu_by_part(
    before: dict[int, tuple[int, str, float]], after: dict[int, tuple[int, str, float]], ours: dict[str, int]
) -> dict[str, float]:
    """CPU seconds each part of the pipeline spent between two `processes()` readings: our processes by
    name (each with its children: nginx's master does no work, its workers do), RabbitMQ, PostgreSQL (every
    backend), and this process, the load driver. A process started in between counts from its start; one
    that ended in between counts in its parent's time for waited-for children (all of it, from its start)."""
    owner = {pid: name for name, pid in ours.items()}
    owner[os.getpid()] = "driver"

    def part(pid: int) -> str | None:
        seen = set()
        while pid not in seen and pid in after:
            if pid in owner:
                return owner[pid]
            seen.add(pid)
            ppid, name, _cpu = after[pid]
            if name in SHARED:
                return SHARED[name]
            pid = ppid
        return None

    spent: dict[str, float] = dict.fromkeys([*ours, "rabbitmq", "postgresql", "driver"], 0.0)
    for pid, (_ppid, name, cpu) in after.items():
        found = part(pid)
        if found is not None:
            earlier = before.get(pid)
            spent[found] += cpu - (earlier[2] if earlier and earlier[1] == name else 0.0)
    return {name: round(seconds, 2) for name, seconds in spent.items()}


def machine_jiffies() -> tuple[int, int, int]:
    """The whole machine's CPU time so far from /proc/stat, in clock ticks: (busy, steal, total).

    Busy is everything but idle, iowait and steal: the services, PostgreSQL, RabbitMQ, nginx, the driver
    and anything else running. Steal is time the hypervisor gave the cores to someone else."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return 0, 0, 0
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    total = user + nice + system + idle + iowait + irq + softirq + steal
    return user + nice + system + irq + softirq, steal, total


def busy_share(before: tuple[int, int, int], after: tuple[int, int, int]) -> dict[str, float]:
    """Per cent of the machine's CPU time between two `machine_jiffies` readings: busy and stolen."""
    total = after[2] - before[2]
    if total <= 0:
        return {"busy_pct": 0.0, "steal_pct": 0.0}
    return {
        "busy_pct": round(100 * (after[0] - before[0]) / total, 1),
        "steal_pct": round(100 * (after[1] - before[1]) / total, 1),
    }


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return 0.0
