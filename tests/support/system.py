"""The whole system started as `make run` starts it (scripts/tarjotin.sh), isolated for one test module."""

from __future__ import annotations

import os
import random
import socket
import subprocess
from collections.abc import Mapping
from datetime import date, timedelta
from pathlib import Path

import asyncpg
import httpx

from tests.support.auth import ADMIN
from tests.support.infra import PG_URL, ROOT, BusNamespace, eventually, short_id


def _ephemeral_low() -> int:
    """The lowest port the kernel hands out to outgoing connections."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port_block(size: int = 10) -> int:
    """A base port whose `size` ports (base … base + size − 1) are free, below the ephemeral range.

    Services bind their ports seconds after this check (migrations run first). A port from the ephemeral
    range can meanwhile become the local end of some outgoing connection (to PostgreSQL, RabbitMQ), and
    the service then fails with "address already in use": seen in CI on 2026-12-03. Below the range only
    another listener can take it.
    """
    high = _ephemeral_low() - size
    for _ in range(200):
        base = random.randint(10000, max(10001, high))
        try:
            for offset in range(size):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", base + offset))
            return base
        except OSError:
            continue
    raise RuntimeError("no free block of ports")


def run_tarjotin(env: Mapping[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`scripts/tarjotin.sh ARGS` with `env`, from the project root, its output captured (not checked)."""
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "tarjotin.sh"), *args],
        env=dict(env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
        check=False,
    )


def script_ports(env: Mapping[str, str]) -> dict[str, int]:
    """The port of each part of a system that scripts/tarjotin.sh starts with `env`, as its `ports` command
    prints them (gateway, issuer, the four services, reporting's readers): the layout lives in the script."""
    printed = run_tarjotin(env, "ports", timeout=30)
    printed.check_returncode()
    return {name: int(port) for name, port in (line.split() for line in printed.stdout.splitlines())}


def system_env(
    workdir: Path, db: str, *, pg_url: str, pg_prefix: str, exchange: str, queue_prefix: str, **settings: str
) -> dict[str, str]:
    """The environment for scripts/tarjotin.sh to run a private system: its own folders under `workdir`, a
    free block of ports (the gateway at its base, the rest as `tarjotin.sh ports` says), databases named by
    `pg_prefix` (PostgreSQL), its own exchange and queues, no demo data; `settings` adds TARJOTIN_* values."""
    base = free_port_block()
    return {
        **os.environ,
        "TARJOTIN_RUN_DIR": str(workdir / "run"),
        "TARJOTIN_DATA_DIR": str(workdir / "data"),
        "TARJOTIN_GATEWAY_PORT": str(base),
        "TARJOTIN_PORT_BASE": str(base),
        "TARJOTIN_DB": db,
        "TARJOTIN_PG_URL": pg_url,
        "TARJOTIN_PG_DB_PREFIX": pg_prefix,
        "TARJOTIN_EXCHANGE": exchange,
        "TARJOTIN_QUEUE_PREFIX": queue_prefix,
        "TARJOTIN_DEMO": "0",
        **settings,
    }


def free_port() -> int:
    """One free port below the ephemeral range (see `free_port_block`)."""
    return free_port_block(1)


class System:
    """Start, stop, kill and restart the processes of a private Tarjotin instance."""

    def __init__(self, workdir: Path, db: str) -> None:
        self.db = db
        self.readers = 1 if db == "sqlite" else 0  # scripts/tarjotin.sh's default
        self.bus = BusNamespace()
        self.pg_prefix = f"test_e2e_{short_id()}"
        self.env = system_env(
            workdir,
            db,
            pg_url=PG_URL,
            pg_prefix=self.pg_prefix,
            exchange=self.bus.exchange,
            queue_prefix=self.bus.prefix,
            TARJOTIN_RETRY_DELAYS_MS="200,500,1000",
        )
        # The default number of read-only reporting API processes, as `make run` has it (decision 004): one
        # beside reporting's own on SQLite, so the end-to-end tests and the chaos test cover it; none on
        # PostgreSQL.
        self.env.pop("TARJOTIN_REPORTING_READERS", None)
        # Verify through the development issuer's JWKS (serving the tests' key), as `make run` does.
        self.env.pop("TARJOTIN_AUTH_PUBLIC_KEY_FILE", None)
        self.ports = script_ports(self.env)
        self.gateway_port = self.ports["gateway"]
        self.url = f"http://127.0.0.1:{self.gateway_port}"
        self.log_dir = workdir / "run" / "log"

    def script(self, *args: str, timeout: float = 300) -> None:
        result = run_tarjotin(self.env, *args, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"tarjotin.sh {' '.join(args)} failed:\n{result.stderr[-3000:]}\n{self.logs_tail()}")

    def logs_tail(self) -> str:
        parts = []
        for log in sorted(self.log_dir.glob("*.log")):
            parts.append(f"--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-15:]))
        return "\n".join(parts)

    def up(self) -> None:
        self.script("up")

    async def down(self) -> None:
        self.script("down")
        await self.bus.delete(retry_delays_ms=(200, 500, 1000))
        if self.db == "postgres":
            admin = await asyncpg.connect(f"{PG_URL}/postgres")
            try:
                for service in ("catalogue", "enrolment", "billing", "reporting"):
                    await admin.execute(f'DROP DATABASE IF EXISTS "{self.pg_prefix}_{service}" WITH (FORCE)')
            finally:
                await admin.close()

    def kill(self, service: str, role: str) -> None:
        self.script("kill", service, role)

    def start(self, service: str, role: str) -> None:
        self.script("start", service, role)

    async def wait_ready(self, timeout: float = 60) -> None:
        """Every service answers /ready through the gateway (after restarts)."""
        async with httpx.AsyncClient(base_url=self.url, timeout=5) as client:

            async def all_ready() -> bool:
                for prefix in ("catalogue", "enrolments", "billing", "reports"):
                    try:
                        response = await client.get(f"/api/{prefix}/ready")
                    except httpx.TransportError:
                        return False
                    if response.status_code != 200:
                        return False
                return True

            await eventually(all_ready, timeout=timeout, interval=0.3)

    def client(self, headers: dict[str, str] | None = None) -> httpx.AsyncClient:
        """A client through the gateway; a network admin unless other `headers` are given."""
        return httpx.AsyncClient(base_url=self.url, timeout=30, headers=ADMIN if headers is None else headers)


class Network:
    """Seed data of a test: institutions, a course and published offerings, made through the gateway."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.tag = short_id()

    async def institution(self, slug: str, *, member: bool) -> str:
        ident = f"{slug}-{self.tag}"
        response = await self.client.post(
            "/api/catalogue/institutions",
            json={
                "id": ident,
                "names": {"fi": slug.title()},
                "kind": "vocational" if member else "learning_centre",
                "member": member,
                "region": "Pohjois-Savo",
            },
        )
        assert response.status_code == 201, response.text
        return ident

    async def offering(self, provider: str, *, seats: int, credits: str = "3.0") -> str:
        course = await self.client.post(
            "/api/catalogue/courses",
            json={
                "provider_id": provider,
                "code": f"C-{short_id()}",
                "titles": {"fi": "Funktiot", "en": "Functions"},
                "subject": "mathematics",
                "level": "upper_secondary",
                "credits": credits,
                "languages": ["fi"],
                "delivery_mode": "online_self_paced",
            },
        )
        assert course.status_code == 201, course.text
        today = date.today()
        offering = await self.client.post(
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
        assert offering.status_code == 201, offering.text
        published = await self.client.post(f"/api/catalogue/offerings/{offering.json()['id']}/publish")
        assert published.status_code == 200, published.text
        return str(offering.json()["id"])

    async def enrol(self, offering_id: str, home: str, learner: str, *, key: str | None = None) -> httpx.Response:
        """Enrol, waiting for the offering and institution to reach the enrolment service first."""
        payload = {
            "offering_id": offering_id,
            "home_institution_id": home,
            "student": {"learner_id": learner, "name": f"Oppilas {learner}", "email": f"{learner}@example.fi"},
        }
        headers = {"Idempotency-Key": key} if key else {}

        async def attempt() -> httpx.Response | None:
            response = await self.client.post("/api/enrolments", json=payload, headers=headers)
            return (
                None
                if response.status_code in (404, 422)
                and "problem" in response.headers["content-type"]
                and ("not open" in response.text or "Home institution" in response.text)
                else response
            )

        response: httpx.Response = await eventually(attempt, timeout=30)
        return response
