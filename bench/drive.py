"""A cheap keep-alive HTTP/1.1 load driver on raw asyncio streams (httpx would eat the CPU we measure).

`drive(...)` sends one POST per body over `concurrency` connections, flat out (rate 0) or open loop
(request i at t0 + i / rate), and returns per-request send times, latencies, statuses and bodies.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field


@dataclass
class Result:
    sent_at: list[float] = field(default_factory=list)  # wall clock, per request index
    latency_ms: list[float] = field(default_factory=list)
    status: list[int] = field(default_factory=list)
    body: list[bytes] = field(default_factory=list)
    wall_s: float = 0.0


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """No garbage collection in the driver while it times requests: a full collection of the bench
    process's heap (the seeded read models' bookkeeping, the search's offerings) took 100–260 ms, and
    every request in flight then carried that pause as latency of the system. Collected before, and
    the collector back on after (a pass allocates a few MB at most)."""
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """One HTTP/1.1 response: its status, its body (by Content-Length or chunked) and whether the server
    closes the connection after it."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length, chunked, close = -1, False, False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value:
            chunked = True
        elif name == b"connection" and value == b"close":
            close = True
    if chunked:
        body = bytearray()
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            body += await reader.readexactly(size)
            await reader.readexactly(2)
        return status, bytes(body), close
    return status, (await reader.readexactly(length) if length > 0 else b""), close


async def drive(
    port: int,
    path: str,
    bodies: list[bytes],
    *,
    concurrency: int = 32,
    rate: float = 0.0,
    headers: Callable[[int], dict[str, str]] | None = None,
) -> Result:
    n = len(bodies)
    result = Result([0.0] * n, [0.0] * n, [0] * n, [b""] * n)
    counter = iter(range(n))

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for i in counter:
                if rate:
                    delay = start + i / rate - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                extra = "".join(f"{k}: {v}\r\n" for k, v in (headers(i) if headers else {}).items())
                payload = bodies[i]
                request = (
                    f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                    f"{extra}Content-Length: {len(payload)}\r\n\r\n"
                ).encode() + payload
                result.sent_at[i] = time.time()
                sent = time.perf_counter()
                writer.write(request)
                status, body, close = await read_response(reader)
                result.latency_ms[i] = (time.perf_counter() - sent) * 1000
                result.status[i], result.body[i] = status, body
                if close:
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
        finally:
            writer.close()

    with collector_paused():
        start = time.perf_counter()
        await asyncio.gather(*(connection() for _ in range(concurrency)))
        result.wall_s = time.perf_counter() - start
    return result


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))], 1)
